//! Deliveries through an egress proxy (`WEBHOOK_PROXY`): HTTP `CONNECT` and
//! SOCKS5 proxies of the test kit count the tunnels; the service resolves
//! and checks the destination itself and asks for a tunnel to the checked
//! IP address; `WEBHOOK_NO_PROXY` destinations go direct.

use std::time::Duration;

use crate::common::spawn_app_with;
use serde_json::json;
use webhook_testkit::{Behavior, ProxyProtocol, Receiver, TestProxy};

async fn deliver_through(proxy_url: &str, no_proxy: &str) -> (Receiver, u16) {
    let receiver = Receiver::start(Behavior::Status(200)).await.unwrap();
    let app = spawn_app_with(&[("WEBHOOK_PROXY", proxy_url), ("WEBHOOK_NO_PROXY", no_proxy)]).await;
    let token = app.token("user-p", false);
    // A host name: the tunnel must still go to the address it resolved to.
    let url = format!("http://localhost:{}/hook", receiver.addr().port());
    let (status, body) = app
        .post(
            "/api/v1/webhooks",
            &token,
            json!({"url": url, "eventTypes": ["*"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let webhook = body["data"]["id"].as_str().unwrap().to_string();
    let (status, sent) = app
        .post(
            &format!("/api/v1/webhooks/{webhook}/test"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["data"]["success"], true, "{sent}");
    receiver.wait_for(1, Duration::from_secs(10)).await.unwrap();
    let port = receiver.addr().port();
    assert!(
        !app.logs().contains("pw-proxy"),
        "the proxy password is logged"
    );
    (receiver, port)
}

#[tokio::test]
async fn deliveries_leave_through_an_http_connect_proxy_to_the_checked_address() {
    let proxy = TestProxy::start(ProxyProtocol::HttpConnect, Some(("egress", "pw-proxy")))
        .await
        .unwrap();
    let (_receiver, port) = deliver_through(&proxy.url(Some(("egress", "pw-proxy"))), "").await;
    let targets = proxy.targets();
    assert_eq!(targets.len(), 1, "{targets:?}");
    let target = &targets[0];
    assert!(
        target == &format!("127.0.0.1:{port}") || target == &format!("[::1]:{port}"),
        "the tunnel goes to an IP address: {target}"
    );
}

#[tokio::test]
async fn deliveries_leave_through_a_socks5_proxy() {
    let proxy = TestProxy::start(ProxyProtocol::Socks5, Some(("egress", "pw-proxy")))
        .await
        .unwrap();
    let (_receiver, port) = deliver_through(&proxy.url(Some(("egress", "pw-proxy"))), "").await;
    let targets = proxy.targets();
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert!(targets[0].ends_with(&format!(":{port}")), "{targets:?}");
}

#[tokio::test]
async fn no_proxy_destinations_go_direct() {
    let proxy = TestProxy::start(ProxyProtocol::HttpConnect, None)
        .await
        .unwrap();
    deliver_through(&proxy.url(None), "localhost").await;
    assert!(proxy.targets().is_empty(), "{:?}", proxy.targets());
}
