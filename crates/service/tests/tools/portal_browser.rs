//! The portal in a real browser: headless Chromium over WebDriver against
//! the real service and real receivers. Each screen is saved under
//! `target/portal-screenshots/`.

use std::time::Duration;

use crate::browser_support::Browser;
use crate::common::{INTERNAL_SECRET, TestApp, spawn_app, spawn_app_with};
use crate::harness::{DONE, Ran, skip};
use reqwest::Method;
use serde_json::{Value, json};
use webhook_testkit::{Behavior, Receiver, TestCa, TlsReceiver};

/// Mints a portal link the way the platform does.
async fn portal_link(app: &TestApp, user: &str, extra: Value) -> Value {
    let mut body = json!({"userId": user});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, answer, _) = app
        .request(
            Method::POST,
            "/api/v1/portal/links",
            Some(INTERNAL_SECRET),
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    answer["data"].clone()
}

async fn delivery_status(app: &TestApp, token: &str, webhook: &str, status: &str) -> Vec<Value> {
    let (code, body) = app
        .get(
            &format!("/api/v1/webhooks/{webhook}/deliveries?status={status}&limit=100"),
            token,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    body["data"].as_array().cloned().unwrap_or_default()
}

async fn a_user_manages_an_endpoint_and_its_deliveries_in_the_portal() -> Ran {
    let Some(browser) = Browser::start("portal user journey").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    // Another user's endpoint, which the portal must never show.
    let other_token = app.token("someone-else", false);
    let other = app
        .create_webhook(&other_token, &receiver.url("/other"), &["*"], None)
        .await;
    let link = portal_link(&app, "portal-user", json!({"expiresIn": "1h"})).await;
    let url = link["url"].as_str().expect("url");
    assert!(url.starts_with(&app.base), "{url}");
    let token = link["token"].as_str().expect("token").to_string();

    // Endpoints, empty.
    browser.goto(url).await;
    browser.wait_for_text("No endpoints yet").await;
    let address = browser.script("return location.href", json!([])).await;
    assert!(
        !address.as_str().unwrap_or_default().contains("token="),
        "the token must leave the address bar: {address}"
    );
    browser.screenshot("01-endpoints-empty").await;

    // Add an endpoint: the API's validation message first, then success.
    browser.click("a", "Add your first endpoint").await;
    browser.wait_for_text("Events to send").await;
    browser.type_into("#url", "ftp://example.com/hook").await;
    browser.click("input[value='user.created']", "").await;
    browser
        .click("button[type=submit]", "Create endpoint")
        .await;
    let text = browser
        .wait_for_text("url must be an http or https URL")
        .await;
    assert!(text.contains("The endpoint was not saved"), "{text}");
    browser.screenshot("02-endpoint-form-validation").await;
    browser.type_into("#url", &receiver.url("/hook")).await;
    browser.type_into("#description", "Billing app").await;
    browser
        .click("button[type=submit]", "Create endpoint")
        .await;
    browser.wait_for_text("shown in full only this once").await;
    let secret = browser.text_of("[data-test=new-secret]").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    browser.screenshot("03-secret-shown-once").await;

    // Endpoint detail: a test event and the receiver's answer.
    browser.click("a", "Continue to the endpoint").await;
    browser.wait_for_text("Send a test event").await;
    browser.click("button", "Send test event").await;
    let shown = browser.wait_for_text("HTTP 200").await;
    assert!(shown.contains("Delivered"), "{shown}");
    let received = receiver
        .wait_for(1, Duration::from_secs(10))
        .await
        .expect("the test event");
    received[0]
        .verify_signatures(&secret)
        .expect("signed with the secret the portal showed");
    browser.screenshot("04-endpoint-detail-test-event").await;

    // Rotate the secret.
    browser.click("button", "Rotate secret").await;
    browser.click("[data-test=confirm]", "Rotate").await;
    browser
        .wait_for_text("The previous secret keeps signing until")
        .await;
    let rotated = browser.text_of("[data-test=secret]").await;
    assert!(
        rotated.starts_with("whsec_") && rotated != secret,
        "{rotated}"
    );
    let (_, list) = app.get("/api/v1/webhooks", &token).await;
    let webhooks = list["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        webhooks.len(),
        1,
        "the portal user has one endpoint: {list}"
    );
    let id = webhooks[0]["id"].as_str().expect("id").to_string();
    let (_, revealed) = app
        .get(&format!("/api/v1/webhooks/{id}/secret"), &token)
        .await;
    assert_eq!(revealed["data"]["secret"], json!(rotated));
    browser.screenshot("05-secret-rotated").await;

    // Events arrive in the log, one of them failing every attempt.
    for _ in 0..3 {
        let (status, body) = app
            .trigger("user.created", "portal-user", json!({"n": 1}))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    receiver
        .wait_for(4, Duration::from_secs(10))
        .await
        .expect("three events");
    receiver.set_behavior(Behavior::Status(500));
    app.trigger("user.created", "portal-user", json!({"n": 2}))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while delivery_status(&app, &token, &id, "failed")
        .await
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "no failed delivery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver.set_behavior(Behavior::Status(200));
    browser.click("a", "Delivery log").await;
    browser.wait_for_count(".log tbody tr", 5).await;
    browser
        .wait_for_count(".log tbody tr[data-status=failed]", 1)
        .await;
    // Live: an event sent while the log is open appears without a reload.
    app.trigger("user.created", "portal-user", json!({"n": 3}))
        .await;
    browser.wait_for_count(".log tbody tr", 6).await;
    browser.screenshot("06-delivery-log").await;
    // A refresh that brings nothing new leaves the keyboard focus where it is.
    browser
        .script(
            "document.querySelector('.log tbody tr a').focus()",
            json!([]),
        )
        .await;
    let before = browser.text_of("[data-test=updated]").await;
    let started = std::time::Instant::now();
    while browser.text_of("[data-test=updated]").await == before {
        assert!(
            started.elapsed() < crate::browser_support::WAIT,
            "the log never refreshed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let focused = browser
        .script(
            "return document.activeElement !== null && document.activeElement.closest('.log tbody tr') !== null",
            json!([]),
        )
        .await;
    assert_eq!(focused, json!(true), "the refresh took the focus away");

    // Filter by status.
    browser.click("#f-status option[value=failed]", "").await;
    let started = std::time::Instant::now();
    loop {
        let rows = browser
            .script(
                "return [...document.querySelectorAll('.log tbody tr')].map(r => r.dataset.status)",
                json!([]),
            )
            .await;
        let rows = rows.as_array().cloned().unwrap_or_default();
        if rows.len() == 1 && rows[0] == json!("failed") {
            break;
        }
        assert!(
            started.elapsed() < crate::browser_support::WAIT,
            "filter shows {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The failed delivery's attempts, then a retry that succeeds.
    browser
        .click(".log tbody tr[data-status=failed] a", "user.created")
        .await;
    let detail = browser.wait_for_text("Attempts (4)").await;
    assert!(detail.contains("HTTP 500"), "{detail}");
    assert!(detail.contains("Envelope sent"), "{detail}");
    browser.click("summary", "Request headers").await;
    let masked = browser.wait_for_text("(masked)").await;
    assert!(masked.contains("x-webhook-signature"), "{masked}");
    browser.screenshot("07-delivery-attempts").await;
    browser.click("button", "Retry now").await;
    browser.wait_for_text("Attempts (5)").await;
    browser.wait_for_count(".heading .badge.delivered", 1).await;
    browser.screenshot("08-delivery-retried").await;

    // The chart on the endpoint page.
    browser
        .goto(&format!("{}/portal#/endpoints/{id}", app.base))
        .await;
    // Every delivery is delivered by now (the failed one was retried).
    browser.wait_for_count("svg.chart rect.delivered", 1).await;
    let latency = browser
        .wait_for_text("Latency of successful attempts: p50")
        .await;
    assert!(!latency.contains("p50 —"), "{latency}");
    // The latency chart: a p50 and a p95 point in the bucket of the
    // deliveries, labelled in ms.
    browser
        .wait_for_count(".latency-chart svg.chart circle.point.p50", 1)
        .await;
    browser
        .wait_for_count(".latency-chart svg.chart circle.point.p95", 1)
        .await;
    // SVG has no innerText: its labels are its text content.
    let axis = browser
        .script(
            "return document.querySelector('.latency-chart svg.chart').textContent",
            json!([]),
        )
        .await;
    assert!(
        axis.as_str().is_some_and(|t| t.contains(" ms")),
        "the value axis names its unit: {axis}"
    );
    let label = browser
        .script(
            "return document.querySelector('.latency-chart svg.chart').getAttribute('aria-label')",
            json!([]),
        )
        .await;
    assert!(
        label
            .as_str()
            .is_some_and(|l| l.starts_with("Latency of successful attempts per hour")),
        "{label}"
    );
    browser
        .script(
            "document.querySelector('.latency-chart').scrollIntoView()",
            json!([]),
        )
        .await;
    browser.screenshot("09-endpoint-chart").await;

    // The catalogue with the guide's verification snippets.
    browser.click("nav a", "Event catalogue").await;
    let catalogue = browser.wait_for_text("Verifying signatures").await;
    let at_top = browser.script("return window.scrollY", json!([])).await;
    assert_eq!(at_top, json!(0), "the catalogue opens at its top");
    assert!(catalogue.contains("user.created") && catalogue.contains("Node.js with Express"));
    browser.screenshot("10-event-catalogue").await;

    // The endpoint list at 375 px: one endpoint (never the other user's),
    // with its 24 h figures, and nothing wider than the screen.
    browser.resize(375, 812).await;
    browser.click("nav a", "Endpoints").await;
    let list = browser.wait_for_text("deliveries in 24 h").await;
    assert!(list.contains("/hook") && !list.contains("/other"), "{list}");
    browser.wait_for_count(".endpoint", 1).await;
    assert_eq!(
        browser
            .script(
                "return document.querySelectorAll('.endpoint').length",
                json!([])
            )
            .await,
        json!(1)
    );
    let overflow = browser
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            json!([]),
        )
        .await;
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "wider than 375 px by {overflow}"
    );
    browser.screenshot("11-endpoints-375px").await;

    // Another user's endpoint by its id: not found.
    let other_id = other["id"].as_str().expect("id");
    browser
        .goto(&format!("{}/portal#/endpoints/{other_id}", app.base))
        .await;
    browser.wait_for_text("No such endpoint").await;

    // Edit, replay, disable and delete, back at full width.
    browser.resize(1440, 1000).await;
    browser
        .goto(&format!("{}/portal#/endpoints/{id}/edit", app.base))
        .await;
    browser.wait_for_text("Events to send").await;
    browser
        .type_into("#description", "Billing app, renamed")
        .await;
    browser.click("button[type=submit]", "Save changes").await;
    browser.wait_for_text("Billing app, renamed").await;
    browser.click("a", "Delivery log").await;
    browser.wait_for_count(".log tbody tr", 6).await;
    browser.click("summary", "Replay a time range").await;
    browser
        .script(
            "document.getElementById('r-since').value = '2020-01-01T00:00'; document.getElementById('r-status').value = 'all'",
            json!([]),
        )
        .await;
    let before = receiver.count();
    browser.click("button[type=submit]", "Replay").await;
    browser.wait_for_text("queued").await;
    receiver
        .wait_for(before + 6, Duration::from_secs(20))
        .await
        .expect("every delivery replayed");
    browser.click("nav a", "Endpoints").await;
    browser.click(".endpoint button", "Disable").await;
    browser.wait_for_count(".endpoint .badge.disabled", 1).await;
    browser.click(".endpoint button", "Delete").await;
    browser.click("[data-test=confirm]", "Delete").await;
    browser.wait_for_text("No endpoints yet").await;
    let (_, list) = app.get("/api/v1/webhooks", &token).await;
    assert_eq!(list["data"], json!([]), "{list}");
    browser.quit().await;
    DONE
}

async fn expired_and_forged_links_are_refused() -> Ran {
    let Some(browser) = Browser::start("portal refused links").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    let app = spawn_app_with(&[("JWT_LEEWAY", "0")]).await;
    let token = app.token("victim", false);
    let receiver = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    app.create_webhook(&token, &receiver.url("/victim"), &["*"], None)
        .await;

    // A link whose signature was altered.
    let link = portal_link(&app, "portal-user", json!({})).await;
    let good = link["token"].as_str().expect("token");
    let (head, signature) = good.rsplit_once('.').expect("a JWT");
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let forged = format!("{head}.{flipped}{}", &signature[1..]);
    browser
        .goto(&format!("{}/portal#token={forged}", app.base))
        .await;
    let text = browser.wait_for_text("Invalid token signature").await;
    assert!(text.contains("not valid or has expired"), "{text}");
    browser.screenshot("12-forged-link").await;

    // A link whose claims were changed to another user: refused as well.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    let mut claims: Value =
        serde_json::from_slice(&b64.decode(&parts[1]).expect("claims")).expect("json");
    claims["sub"] = json!("victim");
    parts[1] = b64.encode(claims.to_string());
    browser
        .goto(&format!("{}/portal#token={}", app.base, parts.join(".")))
        .await;
    let text = browser.wait_for_text("Invalid token signature").await;
    assert!(!text.contains("/victim"), "{text}");

    // A link that has expired.
    let short = portal_link(&app, "portal-user", json!({"expiresIn": "1s"})).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, _) = app
        .get("/api/v1/webhooks", short["token"].as_str().expect("token"))
        .await;
    assert_eq!(status, 401, "the service refuses an expired link");
    browser.goto(short["url"].as_str().expect("url")).await;
    browser.wait_for_text("This portal link has expired").await;
    browser.screenshot("13-expired-link").await;
    browser.quit().await;
    DONE
}

async fn an_operator_sees_every_users_failing_endpoints() -> Ran {
    let Some(browser) = Browser::start("portal operator overview").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    let app = spawn_app().await;
    let failing = Receiver::start(Behavior::Status(503))
        .await
        .expect("receiver");
    let token_a = app.token("alice", false);
    let token_b = app.token("bob", false);
    let a = app
        .create_webhook(&token_a, &failing.url("/alice"), &["user.*"], None)
        .await;
    app.create_webhook(&token_b, &failing.url("/bob"), &["user.*"], None)
        .await;
    app.trigger("user.created", "alice", json!({})).await;
    app.trigger("user.created", "bob", json!({})).await;
    failing
        .wait_for(2, Duration::from_secs(10))
        .await
        .expect("both attempted");

    let link = portal_link(&app, "operator", json!({"admin": true})).await;
    browser.goto(link["url"].as_str().expect("url")).await;
    browser.click("nav a", "Operator overview").await;
    let text = browser.wait_for_text("Failing now (2)").await;
    assert!(text.contains("/alice") && text.contains("/bob"), "{text}");
    assert!(
        text.contains("Owner alice") && text.contains("Owner bob"),
        "{text}"
    );
    browser.wait_for_text("Slowest endpoints (24 h)").await;
    browser
        .wait_for_text("No successful delivery in the last 24 hours to time.")
        .await;
    browser.screenshot("14-operator-overview").await;
    // Straight into that user's endpoint.
    browser.click("a", "/alice").await;
    browser.wait_for_text("Send a test event").await;
    let here = browser.script("return location.hash", json!([])).await;
    assert_eq!(
        here,
        json!(format!(
            "#/endpoints/{}",
            a["id"].as_str().unwrap_or_default()
        ))
    );
    browser.quit().await;
    DONE
}

/// The overview's charts over time: events ingested, every user's
/// deliveries by outcome and their latency.
async fn the_operator_overview_charts_the_platform_over_time() -> Ran {
    let Some(browser) = Browser::start("portal operator charts").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    let app = spawn_app().await;
    let ok = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    let failing = Receiver::start(Behavior::Status(500))
        .await
        .expect("receiver");
    let token_a = app.token("alice", false);
    let token_b = app.token("bob", false);
    app.create_webhook(&token_a, &ok.url("/alice"), &["user.*"], None)
        .await;
    app.create_webhook(&token_b, &failing.url("/bob"), &["user.*"], None)
        .await;
    for user in ["alice", "alice", "bob", "nobody"] {
        app.trigger("user.created", user, json!({})).await;
    }
    ok.wait_for(2, Duration::from_secs(10))
        .await
        .expect("alice's deliveries");
    failing
        .wait_for(1, Duration::from_secs(10))
        .await
        .expect("bob's first attempt");
    // The page draws its charts once: wait until the results are recorded.
    let admin = app.token("operator", true);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = app.get("/api/v1/admin/stats/hourly", &admin).await;
        assert_eq!(status, 200, "{body}");
        let sum = |field: &str| -> u64 {
            body["data"]["buckets"]
                .as_array()
                .map(|rows| rows.iter().filter_map(|b| b[field].as_u64()).sum())
                .unwrap_or(0)
        };
        if sum("delivered") == 2 && sum("retrying") + sum("failed") == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let link = portal_link(&app, "operator", json!({"admin": true})).await;
    browser.goto(link["url"].as_str().expect("url")).await;
    browser.click("nav a", "Operator overview").await;
    let text = browser
        .wait_for_text("Events ingested per hour (4 in all)")
        .await;
    assert!(text.contains("Deliveries per hour by outcome"), "{text}");
    browser
        .wait_for_count("[data-chart=events] svg.chart rect.events", 1)
        .await;
    browser
        .wait_for_count("[data-chart=deliveries] svg.chart rect.delivered", 1)
        .await;
    browser
        .wait_for_count("[data-chart=latency] svg.chart circle.point.p95", 1)
        .await;
    // Bob's delivery is retrying or has failed by now: its bar is there too.
    browser
        .wait_for_count(
            "[data-chart=deliveries] svg.chart rect.retrying, [data-chart=deliveries] svg.chart rect.failed",
            1,
        )
        .await;
    let events = browser
        .script(
            "return document.querySelector('[data-chart=events] svg.chart').getAttribute('aria-label')",
            json!([]),
        )
        .await;
    assert!(
        events
            .as_str()
            .is_some_and(|l| l.starts_with("Events ingested per hour: 4 in all")),
        "{events}"
    );
    browser
        .script(
            "document.querySelector('#platform-h').scrollIntoView()",
            json!([]),
        )
        .await;
    browser.screenshot("22-operator-charts-24h").await;
    // The week, in six-hour buckets.
    browser
        .script(
            "const s = document.getElementById('overview-window'); s.value = '7d'; s.dispatchEvent(new Event('change'))",
            json!([]),
        )
        .await;
    browser
        .wait_for_text("Events ingested per 6 hours (4 in all)")
        .await;
    browser
        .wait_for_count("[data-chart=latency] svg.chart circle.point.p50", 1)
        .await;
    browser.screenshot("23-operator-charts-7d").await;
    browser.quit().await;
    DONE
}

/// A log of more than 10,000 deliveries is counted only so far: the pager
/// says "or more" and still moves to older pages.
async fn a_log_beyond_the_count_cap_says_or_more_and_still_pages() -> Ran {
    let Some(browser) = Browser::start("portal large log").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    let token = app.token("busy", false);
    let webhook = app
        .create_webhook(&token, &receiver.url("/busy"), &["user.*"], None)
        .await;
    let id = webhook["id"].as_str().expect("id").to_string();
    const EVENTS: usize = 10_050;
    for chunk in 0..EVENTS.div_ceil(1000) {
        let n = (EVENTS - chunk * 1000).min(1000);
        let events: Vec<Value> = (0..n)
            .map(|i| json!({"eventType": "user.created", "userId": "busy", "data": {"n": chunk * 1000 + i}}))
            .collect();
        let (status, body, _) = app
            .request(
                Method::POST,
                "/internal/events/batch",
                Some(INTERNAL_SECRET),
                Some(json!({"events": events})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let (status, first) = app
        .get(&format!("/api/v1/webhooks/{id}/deliveries?limit=1"), &token)
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["meta"]["totalExact"], json!(false), "{first}");

    let link = portal_link(&app, "busy", json!({"readOnly": true})).await;
    browser.goto(link["url"].as_str().expect("url")).await;
    browser.wait_for_text("/busy").await;
    browser
        .goto(&format!("{}/portal#/endpoints/{id}/log", app.base))
        .await;
    browser.wait_for_count(".log tbody tr", 20).await;
    let pager = wait_for_text_in(&browser, ".pager", "or more deliveries").await;
    assert!(pager.contains("Page 1 ·"), "{pager}");
    let counted: String = pager
        .split('·')
        .nth(1)
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    assert_eq!(counted, "10000", "{pager}");
    let newest = browser.text_of(".log tbody tr a").await;
    let first_link = browser
        .script(
            "return document.querySelector('.log tbody tr a').getAttribute('href')",
            json!([]),
        )
        .await;
    assert!(!newest.is_empty());
    browser.screenshot("24-log-10000-or-more").await;
    browser.click(".pager button", "Older").await;
    let pager = wait_for_text_in(&browser, ".pager", "Page 2 ·").await;
    assert!(pager.contains("or more deliveries"), "{pager}");
    browser.wait_for_count(".log tbody tr", 20).await;
    let second_link = browser
        .script(
            "return document.querySelector('.log tbody tr a').getAttribute('href')",
            json!([]),
        )
        .await;
    assert_ne!(first_link, second_link, "page 2 shows older deliveries");
    // Newer goes back to the first page.
    browser.click(".pager button", "Newer").await;
    wait_for_text_in(&browser, ".pager", "Page 1 ·").await;
    browser
        .screenshot("25-log-10000-or-more-page-2-and-back")
        .await;
    browser.quit().await;
    DONE
}

async fn an_endpoint_whose_circuit_is_open_says_its_deliveries_are_held() -> Ran {
    let Some(browser) = Browser::start("portal circuit").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    // A long retry wait: the five failures that open the circuit are first attempts.
    let app = spawn_app_with(&[("WEBHOOK_RETRY_SCHEDULE", "1h")]).await;
    let failing = Receiver::start(Behavior::Status(500))
        .await
        .expect("receiver");
    let token = app.token("carol", false);
    app.create_webhook(&token, &failing.url("/carol"), &["user.*"], None)
        .await;
    for n in 0..8 {
        app.trigger("user.created", "carol", json!({"n": n})).await;
    }
    failing
        .wait_for(5, Duration::from_secs(10))
        .await
        .expect("five failures");

    let link = portal_link(&app, "carol", json!({})).await;
    browser.goto(link["url"].as_str().expect("url")).await;
    let text = browser.wait_for_text("failures in a row").await;
    assert!(text.to_lowercase().contains("circuit open"), "{text}");
    assert!(
        text.contains("Next probe") || text.contains("A probe is out"),
        "{text}"
    );
    browser.screenshot("16-circuit-open").await;
    browser.quit().await;
    DONE
}

async fn the_log_and_the_chart_work_on_postgresql() -> Ran {
    let db = match crate::postgres_support::TestDatabase::fresh().await {
        Ok(db) => db,
        Err(why) => return skip(why),
    };
    let Some(browser) = Browser::start("portal on PostgreSQL").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    let app = spawn_app_with(&[("DATABASE_URL", db.url.as_str())]).await;
    let receiver = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    let token = app.token("pg-user", false);
    let webhook = app
        .create_webhook(&token, &receiver.url("/pg"), &["*"], None)
        .await;
    let id = webhook["id"].as_str().expect("id");
    for _ in 0..3 {
        app.trigger("credit.low", "pg-user", json!({"credits": 5}))
            .await;
    }
    receiver
        .wait_for(3, Duration::from_secs(10))
        .await
        .expect("delivered");
    receiver.set_behavior(Behavior::Status(500));
    app.trigger("credit.depleted", "pg-user", json!({})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while delivery_status(&app, &token, id, "failed").await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no failed delivery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let link = portal_link(&app, "pg-user", json!({"readOnly": true})).await;
    browser.goto(link["url"].as_str().expect("url")).await;
    browser.wait_for_text("/pg").await;
    browser
        .goto(&format!("{}/portal#/endpoints/{id}/log", app.base))
        .await;
    browser.wait_for_count(".log tbody tr", 4).await;
    browser
        .wait_for_count(".log tbody tr[data-status=failed]", 1)
        .await;
    // A read-only link offers no replay (the API would refuse it).
    assert!(!browser.main_text().await.contains("Replay a time range"));
    browser
        .click("#f-type option[value='credit.depleted']", "")
        .await;
    let started = std::time::Instant::now();
    while browser
        .script(
            "return document.querySelectorAll('.log tbody tr').length",
            json!([]),
        )
        .await
        != json!(1)
    {
        assert!(
            started.elapsed() < crate::browser_support::WAIT,
            "the type filter"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.screenshot("15-postgres-log-filtered").await;
    browser
        .goto(&format!("{}/portal#/endpoints/{id}", app.base))
        .await;
    browser.wait_for_count("svg.chart rect.delivered", 1).await;
    browser.wait_for_count("svg.chart rect.failed", 1).await;
    browser.quit().await;
    DONE
}

/// Serves one HTML page framing `src`, from an origin of its own (a port of
/// its own), as the platform's front end would embed the portal.
fn embedding_page(listener: std::net::TcpListener, src: String) {
    use std::io::{Read as _, Write as _};
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = format!(
                "<!doctype html><title>Platform</title><h1>Platform app</h1>\
                 <iframe id=\"portal\" title=\"Webhooks\" src=\"{src}\" width=\"1200\" height=\"700\"></iframe>"
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

async fn the_portal_works_in_an_iframe_of_an_allowed_origin_only() -> Ran {
    let Some(browser) = Browser::start("portal in an iframe").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    let allowed = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let refused = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let allowed_origin = format!("http://{}", allowed.local_addr().expect("addr"));
    let refused_origin = format!("http://{}", refused.local_addr().expect("addr"));
    let app = spawn_app_with(&[("WEBHOOK_PORTAL_FRAME_ANCESTORS", allowed_origin.as_str())]).await;
    let link = portal_link(&app, "framed-user", json!({})).await;
    let url = link["url"].as_str().expect("url").to_string();
    embedding_page(allowed, url.clone());
    embedding_page(refused, url);

    // Allowed: the portal runs in the frame, with no cookie to rely on.
    browser.goto(&allowed_origin).await;
    browser.enter_frame("#portal").await;
    browser.wait_for_text("No endpoints yet").await;
    let cookies = browser.script("return document.cookie", json!([])).await;
    assert_eq!(cookies, json!(""));
    browser.leave_frames().await;
    browser.screenshot("16-embedded-in-an-iframe").await;

    // Any other origin: the browser refuses to render the portal in its frame.
    browser.goto(&refused_origin).await;
    browser.enter_frame("#portal").await;
    // Wait for the frame's document to finish (the portal or the browser's
    // error page), then look at what it is.
    let started = std::time::Instant::now();
    loop {
        let state = browser
            .script(
                "return document.readyState === 'complete' && location.href !== 'about:blank'",
                json!([]),
            )
            .await;
        if state == json!(true) {
            break;
        }
        assert!(
            started.elapsed() < crate::browser_support::WAIT,
            "the frame never loaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let portal = browser
        .script("return document.getElementById('main') !== null", json!([]))
        .await;
    assert_eq!(portal, json!(false), "framed by an origin not allowed");
    browser.quit().await;
    DONE
}

async fn the_api_reference_renders_every_route_without_another_host() -> Ran {
    let Some(browser) = Browser::start("API reference").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    let app = spawn_app().await;
    browser.goto(&format!("{}/docs", app.base)).await;
    // Swagger UI draws one `.opblock` per operation once it has read the document.
    let started = std::time::Instant::now();
    let operations = loop {
        let n = browser
            .script(
                "return document.querySelectorAll('.opblock').length",
                json!([]),
            )
            .await
            .as_u64()
            .unwrap_or(0);
        if n >= 20 {
            break n;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the reference drew {n} operations"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = browser
        .script("return document.body.innerText", json!([]))
        .await;
    let text = text.as_str().unwrap_or_default();
    for route in [
        "/api/v1/webhooks/{id}/rotate-secret",
        "/internal/webhooks/trigger",
        "/api/v1/portal/links",
    ] {
        assert!(text.contains(route), "{route} missing from the reference");
    }
    let hosts = browser
        .script(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).host)",
            json!([]),
        )
        .await;
    let own = app.base.trim_start_matches("http://");
    let hosts: Vec<&str> = hosts
        .as_array()
        .expect("resource hosts")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(hosts.len() >= 4, "the page loaded its files: {hosts:?}");
    assert!(
        hosts.iter().all(|h| *h == own),
        "the reference loaded from another host: {hosts:?}"
    );
    eprintln!("the reference shows {operations} operations");
    browser.screenshot("15-api-reference").await;
    browser.quit().await;
    DONE
}

/// The webhooks of `token`'s user as the API reads them.
async fn webhooks_of(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, list) = app.get("/api/v1/webhooks", token).await;
    assert_eq!(status, 200, "{list}");
    list["data"].as_array().cloned().unwrap_or_default()
}

/// Waits until the element `css` shows `text`; returns its text.
async fn wait_for_text_in(browser: &Browser, css: &str, text: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let now = browser.text_of(css).await;
        if now.contains(text) {
            return now;
        }
        assert!(
            started.elapsed() < crate::browser_support::WAIT,
            "'{css}' did not show '{text}'; it shows '{now}', the page:\n{}",
            browser.main_text().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_user_sets_a_filter_and_a_rate_limit_in_the_advanced_form() -> Ran {
    let Some(browser) = Browser::start("portal delivery controls").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    let link = portal_link(&app, "controls-user", json!({})).await;
    let token = link["token"].as_str().expect("token").to_string();
    browser.goto(link["url"].as_str().expect("url")).await;
    browser.click("a", "Add your first endpoint").await;
    browser.wait_for_text("Events to send").await;
    browser.type_into("#url", &receiver.url("/credits")).await;
    browser.click("input[value='credit.*']", "").await;
    browser.click("summary", "Advanced").await;

    // A filter the server refuses: its message at the field, nothing created.
    browser
        .type_into("#filter", r#"{"data": {"balance": {"$lt": true}}}"#)
        .await;
    browser.type_into("#rateLimitPerSecond", "50").await;
    browser
        .click("button[type=submit]", "Create endpoint")
        .await;
    let at_field = wait_for_text_in(
        &browser,
        "[data-error-for=filter]",
        "expects a number or a string",
    )
    .await;
    assert!(at_field.contains("filter.data.balance"), "{at_field}");
    assert!(
        browser
            .main_text()
            .await
            .contains("The endpoint was not saved")
    );
    assert_eq!(
        browser
            .script(
                "return document.getElementById('filter').getAttribute('aria-invalid')",
                json!([])
            )
            .await,
        json!("true")
    );
    assert_eq!(webhooks_of(&app, &token).await, Vec::<Value>::new());

    // "Try it" against the catalogue's examples: credit.low has balance 8.
    browser
        .type_into("#filter", r#"{"data": {"balance": {"$lt": 10}}}"#)
        .await;
    browser
        .click("#filter-sample option[value='credit.low']", "")
        .await;
    browser.click("button", "Try it").await;
    wait_for_text_in(
        &browser,
        "[data-test=filter-result]",
        "the example credit.low would be delivered",
    )
    .await;
    assert_eq!(browser.text_of("[data-error-for=filter]").await, "");
    browser
        .click("#filter-sample option[value='user.created']", "")
        .await;
    browser.click("button", "Try it").await;
    wait_for_text_in(
        &browser,
        "[data-test=filter-result]",
        "the example user.created would not be delivered",
    )
    .await;
    browser.type_into("#retrySchedule", "5s, 1m").await;
    browser.type_into("#timeoutMs", "5000").await;
    browser
        .script(
            "document.querySelector('details.advanced').scrollIntoView()",
            json!([]),
        )
        .await;
    browser.screenshot("17-endpoint-advanced-form").await;

    browser
        .click("button[type=submit]", "Create endpoint")
        .await;
    browser.wait_for_text("shown in full only this once").await;
    browser.click("a", "Continue to the endpoint").await;
    browser
        .wait_for_text("Delivery controls and endpoint options")
        .await;
    let shown_filter = browser.text_of("[data-test=option-filter]").await;
    assert!(
        shown_filter.contains("\"$lt\": 10"),
        "the page shows the filter: {shown_filter}"
    );
    assert_eq!(
        browser.text_of("[data-test=option-rate-limit]").await,
        "50 deliveries a second"
    );
    assert_eq!(
        browser.text_of("[data-test=option-retry-schedule]").await,
        "5s, 1m"
    );
    assert_eq!(
        browser.text_of("[data-test=option-timeout]").await,
        "5000 ms"
    );
    browser
        .script(
            "document.getElementById('options-h').scrollIntoView()",
            json!([]),
        )
        .await;
    browser.screenshot("18-endpoint-options").await;

    // The API read agrees with the page.
    let webhooks = webhooks_of(&app, &token).await;
    assert_eq!(webhooks.len(), 1, "{webhooks:?}");
    let webhook = &webhooks[0];
    assert_eq!(webhook["filter"], json!({"data": {"balance": {"$lt": 10}}}));
    assert_eq!(webhook["rateLimitPerSecond"], json!(50));
    assert_eq!(webhook["retrySchedule"], json!(["5s", "1m"]));
    assert_eq!(webhook["timeoutMs"], json!(5000));

    assert_eq!(
        browser.text_of("[data-test=option-ordering]").await,
        "Any order"
    );
    assert_eq!(webhook["ordering"], Value::Null);

    // Emptying the rate limit clears it and first-in-first-out per user
    // is chosen; what was not touched stays.
    let id = webhook["id"].as_str().expect("id");
    browser.click("a", "Edit").await;
    browser.wait_for_text("Events to send").await;
    browser.type_into("#rateLimitPerSecond", "").await;
    browser.click("#ordering option[value=userId]", "").await;
    browser.click("button[type=submit]", "Save changes").await;
    wait_for_text_in(&browser, "[data-test=option-rate-limit]", "Unlimited").await;
    assert_eq!(
        browser.text_of("[data-test=option-ordering]").await,
        "First in, first out, one order per user"
    );
    let (_, read) = app.get(&format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(read["data"]["rateLimitPerSecond"], Value::Null, "{read}");
    assert_eq!(read["data"]["ordering"], json!("fifo"), "{read}");
    assert_eq!(read["data"]["orderingKey"], json!("userId"), "{read}");
    assert_eq!(
        read["data"]["filter"],
        json!({"data": {"balance": {"$lt": 10}}})
    );
    assert_eq!(read["data"]["timeoutMs"], json!(5000));

    // Back to any order: the form sends `"ordering": null`.
    browser.click("a", "Edit").await;
    browser.wait_for_text("Events to send").await;
    browser.click("#ordering option[value='']", "").await;
    browser.click("button[type=submit]", "Save changes").await;
    wait_for_text_in(&browser, "[data-test=option-ordering]", "Any order").await;
    let (_, read) = app.get(&format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(read["data"]["ordering"], Value::Null, "{read}");
    browser.quit().await;
    DONE
}

async fn a_blocked_fifo_order_shows_its_head_on_the_endpoint_page() -> Ran {
    let Some(browser) = Browser::start("portal fifo orders").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    // Retries far apart: the failing head stays at the front of its order.
    let app = spawn_app_with(&[("WEBHOOK_RETRY_SCHEDULE", "1h")]).await;
    let receiver = Receiver::start(Behavior::Status(500))
        .await
        .expect("receiver");
    let link = portal_link(&app, "fifo-user", json!({})).await;
    let token = link["token"].as_str().expect("token").to_string();
    let (status, created) = app
        .post(
            "/api/v1/webhooks",
            &token,
            json!({"url": receiver.url("/ordered"), "eventTypes": ["credit.low"], "ordering": "fifo"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().expect("id").to_string();
    for n in 0..3 {
        let (status, _) = app
            .trigger(
                "credit.low",
                "fifo-user",
                json!({"balance": n, "threshold": 10}),
            )
            .await;
        assert_eq!(status, 202);
    }
    // The first delivery fails once; the other two wait behind it.
    receiver
        .wait_for(1, Duration::from_secs(10))
        .await
        .expect("the head's first attempt");
    let head = loop {
        let (_, orders) = app
            .get(&format!("/api/v1/webhooks/{id}/ordering"), &token)
            .await;
        if orders["data"]["orders"][0]["blocked"] == true {
            break orders["data"]["orders"][0].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(head["waiting"], json!(2), "{head}");
    let head_id = head["headDeliveryId"]
        .as_str()
        .expect("head id")
        .to_string();

    browser.goto(link["url"].as_str().expect("url")).await;
    browser
        .goto(&format!("{}/portal#/endpoints/{id}", app.base))
        .await;
    let row = wait_for_text_in(&browser, "[data-test=order-row]", "Blocked").await;
    assert!(row.contains(&head_id), "{row}");
    assert!(row.contains("after 1 attempt"), "{row}");
    assert_eq!(
        browser.text_of("[data-test=option-ordering]").await,
        "First in, first out, one order for the endpoint"
    );
    browser.screenshot("21-endpoint-fifo-orders").await;
    // The head's link opens the delivery that holds the order.
    browser.click("[data-test=order-row] a", "").await;
    browser.wait_for_text("Attempts").await;
    assert!(browser.main_text().await.contains(&head_id));
    assert_eq!(
        receiver.count(),
        1,
        "nothing went out behind the failing head"
    );
    browser.quit().await;
    DONE
}

async fn custom_headers_and_bearer_auth_stay_masked_and_reach_the_receiver() -> Ran {
    let Some(browser) = Browser::start("portal endpoint options").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    let link = portal_link(&app, "reach-user", json!({})).await;
    let token = link["token"].as_str().expect("token").to_string();
    let webhook = app
        .create_webhook(&token, &receiver.url("/reach"), &["user.*"], None)
        .await;
    let id = webhook["id"].as_str().expect("id").to_string();
    let page = format!("{}/portal#/endpoints/{id}", app.base);
    browser.goto(link["url"].as_str().expect("url")).await;
    browser.wait_for_text("/reach").await;

    // A custom header and a bearer token, set in the form.
    browser.goto(&format!("{page}/edit")).await;
    browser.wait_for_text("Events to send").await;
    browser.click("summary", "Advanced").await;
    browser.click("button", "Add header").await;
    browser
        .type_into("[data-test=header-name]", "X-Tenant")
        .await;
    browser
        .type_into("[data-test=header-value]", "acme-tenant-7")
        .await;
    browser.click("#auth option[value=bearer]", "").await;
    browser
        .type_into("#auth-bearer-token", "tok-portal-123")
        .await;
    browser.click("button[type=submit]", "Save changes").await;
    browser
        .wait_for_text("Delivery controls and endpoint options")
        .await;

    // After a reload the page shows names and masks, never the values.
    browser.goto(&page).await;
    let headers = wait_for_text_in(&browser, "[data-test=option-headers]", "X-Tenant").await;
    assert!(headers.contains("X-Tenant: ********"), "{headers}");
    let auth = browser.text_of("[data-test=option-auth]").await;
    assert!(
        auth.contains("Bearer token") && auth.contains("********"),
        "{auth}"
    );
    let text = browser.main_text().await;
    assert!(
        !text.contains("acme-tenant-7") && !text.contains("tok-portal-123"),
        "{text}"
    );
    browser
        .script(
            "document.getElementById('options-h').scrollIntoView()",
            json!([]),
        )
        .await;
    browser
        .screenshot("19-endpoint-headers-and-auth-masked")
        .await;

    // A test event from the page carries both to the receiver.
    browser.click("button", "Send test event").await;
    browser.wait_for_text("HTTP 200").await;
    let received = receiver
        .wait_for(1, Duration::from_secs(10))
        .await
        .expect("the test event");
    assert_eq!(received[0].header("x-tenant"), Some("acme-tenant-7"));
    assert_eq!(
        received[0].header("authorization"),
        Some("Bearer tok-portal-123")
    );

    // Editing something else keeps the stored values (the mask is never sent).
    browser.goto(&format!("{page}/edit")).await;
    browser.wait_for_text("Events to send").await;
    let kept = browser
        .script(
            "return [document.querySelector('[data-test=header-value]').value, document.getElementById('auth-bearer-token').value]",
            json!([]),
        )
        .await;
    assert_eq!(kept, json!(["", ""]), "stored values are never in the form");
    browser.type_into("#description", "Tenant hooks").await;
    browser.click("button[type=submit]", "Save changes").await;
    browser.wait_for_text("Tenant hooks").await;
    let (status, body) = app
        .post(
            &format!("/api/v1/webhooks/{id}/test"),
            &token,
            json!({"eventType": "user.created"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let received = receiver
        .wait_for(2, Duration::from_secs(10))
        .await
        .expect("the second test event");
    assert_eq!(received[1].header("x-tenant"), Some("acme-tenant-7"));
    assert_eq!(
        received[1].header("authorization"),
        Some("Bearer tok-portal-123")
    );

    // Adding a header replaces them all: the form asks for the stored value
    // again instead of sending the mask, and nothing changes.
    browser.goto(&format!("{page}/edit")).await;
    browser.wait_for_text("Events to send").await;
    browser.click("button", "Add header").await;
    browser
        .script(
            "const names = document.querySelectorAll('[data-test=header-name]'); names[names.length - 1].id = 'new-header-name'; const values = document.querySelectorAll('[data-test=header-value]'); values[values.length - 1].id = 'new-header-value';",
            json!([]),
        )
        .await;
    browser.type_into("#new-header-name", "X-Region").await;
    browser.type_into("#new-header-value", "eu").await;
    browser.click("button[type=submit]", "Save changes").await;
    wait_for_text_in(
        &browser,
        "[data-error-for=headers]",
        "Enter the value of X-Tenant again",
    )
    .await;
    let (_, read) = app.get(&format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(
        read["data"]["headers"],
        json!({"X-Tenant": "********"}),
        "{read}"
    );
    assert_eq!(read["data"]["auth"]["type"], json!("bearer"), "{read}");

    // The open advanced form fits a 375 px screen.
    browser.resize(375, 812).await;
    let overflow = browser
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            json!([]),
        )
        .await;
    let wide = browser
        .script(
            "const w = document.documentElement.clientWidth; return [...document.querySelectorAll('#main *')].filter(e => e.getBoundingClientRect().right > w + 0.5 && ![...e.children].some(c => c.getBoundingClientRect().right > w + 0.5)).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + (e.innerText || '').slice(0, 40))",
            json!([]),
        )
        .await;
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "the advanced form is wider than 375 px by {overflow}: {wide}"
    );
    browser.resize(1440, 1000).await;

    // Removing the only header removes it; the bearer token stays.
    browser.goto(&page).await;
    browser.wait_for_text("Send a test event").await;
    browser.goto(&format!("{page}/edit")).await;
    browser.wait_for_text("Events to send").await;
    browser.click(".header-row button", "Remove").await;
    browser.click("button[type=submit]", "Save changes").await;
    wait_for_text_in(&browser, "[data-test=option-headers]", "None").await;
    let (_, read) = app.get(&format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(read["data"]["headers"], json!({}), "{read}");
    assert_eq!(read["data"]["auth"]["type"], json!("bearer"), "{read}");
    browser.quit().await;
    DONE
}

async fn an_ed25519_endpoint_shows_its_public_key_and_read_only_links_cannot_edit() -> Ran {
    let Some(browser) = Browser::start("portal ed25519").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    let link = portal_link(&app, "key-user", json!({})).await;
    let token = link["token"].as_str().expect("token").to_string();
    browser.goto(link["url"].as_str().expect("url")).await;
    browser.click("a", "Add your first endpoint").await;
    browser.wait_for_text("Events to send").await;
    browser.type_into("#url", &receiver.url("/signed")).await;
    browser.click("input[value='*']", "").await;
    browser.click("summary", "Advanced").await;
    browser.click("#signing option[value=ed25519]", "").await;
    browser
        .click("button[type=submit]", "Create endpoint")
        .await;
    browser.click("a", "Continue to the endpoint").await;
    let shown = wait_for_text_in(&browser, "[data-test=public-key]", "whpk_").await;
    let webhooks = webhooks_of(&app, &token).await;
    assert_eq!(webhooks[0]["signing"], json!("ed25519"));
    assert_eq!(
        webhooks[0]["publicKey"],
        json!(shown),
        "the page shows the API's key"
    );
    assert!(
        browser
            .text_of("[data-test=option-signing]")
            .await
            .contains("Ed25519")
    );
    let copy = browser
        .script(
            "return [...document.querySelectorAll('button')].some(b => b.innerText === 'Copy public key')",
            json!([]),
        )
        .await;
    assert_eq!(copy, json!(true), "a copy button beside the key");
    browser
        .script(
            "document.getElementById('options-h').scrollIntoView()",
            json!([]),
        )
        .await;
    browser.screenshot("20-endpoint-ed25519-public-key").await;

    // A read-only link shows the options, and no way to change them.
    let id = webhooks[0]["id"].as_str().expect("id");
    let read_only = portal_link(&app, "key-user", json!({"readOnly": true})).await;
    browser.goto(read_only["url"].as_str().expect("url")).await;
    browser.wait_for_text("/signed").await;
    browser
        .goto(&format!("{}/portal#/endpoints/{id}", app.base))
        .await;
    wait_for_text_in(&browser, "[data-test=public-key]", "whpk_").await;
    let text = browser.main_text().await;
    assert!(
        !text.contains("Edit") && !text.contains("Advanced"),
        "{text}"
    );
    browser
        .goto(&format!("{}/portal#/endpoints/{id}/edit", app.base))
        .await;
    let text = browser.wait_for_text("This portal link is read-only").await;
    assert!(
        !text.contains("Advanced") && !text.contains("Try it"),
        "{text}"
    );
    browser.quit().await;
    DONE
}

/// Sends a test event through the API; returns what the receiver answered.
async fn test_send(app: &TestApp, token: &str, webhook: &str) -> Value {
    let (status, body) = app
        .post(
            &format!("/api/v1/webhooks/{webhook}/test"),
            token,
            json!({"eventType": "user.created"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

async fn basic_auth_is_changed_and_removed_in_the_portal_without_losing_the_password() -> Ran {
    let Some(browser) = Browser::start("portal basic auth").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    use base64::Engine as _;
    let basic = |user: &str, password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    };
    let app = spawn_app().await;
    let receiver = Receiver::start(Behavior::Status(200))
        .await
        .expect("receiver");
    let link = portal_link(&app, "basic-user", json!({})).await;
    let token = link["token"].as_str().expect("token").to_string();
    let webhook = app
        .create_webhook(&token, &receiver.url("/basic"), &["user.*"], None)
        .await;
    let id = webhook["id"].as_str().expect("id").to_string();
    let edit = format!("{}/portal#/endpoints/{id}/edit", app.base);
    browser.goto(link["url"].as_str().expect("url")).await;
    browser.wait_for_text("/basic").await;

    browser.goto(&edit).await;
    browser.wait_for_text("Events to send").await;
    browser.click("summary", "Advanced").await;
    browser.click("#auth option[value=basic]", "").await;
    browser.type_into("#auth-basic-username", "hooks").await;
    browser.type_into("#auth-basic-password", "pw-1").await;
    browser.click("button[type=submit]", "Save changes").await;
    let shown = wait_for_text_in(&browser, "[data-test=option-auth]", "HTTP Basic").await;
    assert!(
        shown.contains("hooks") && shown.contains("********") && !shown.contains("pw-1"),
        "{shown}"
    );
    test_send(&app, &token, &id).await;
    let got = receiver
        .wait_for(1, Duration::from_secs(10))
        .await
        .expect("sent");
    assert_eq!(
        got[0].header("authorization"),
        Some(basic("hooks", "pw-1").as_str())
    );

    // A new user name needs the password again: the form says so and sends nothing.
    browser.goto(&edit).await;
    browser.wait_for_text("Events to send").await;
    browser.type_into("#auth-basic-username", "hooks2").await;
    browser.click("button[type=submit]", "Save changes").await;
    wait_for_text_in(
        &browser,
        "[data-error-for=auth]",
        "Enter the password again",
    )
    .await;
    let (_, read) = app.get(&format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(read["data"]["auth"]["username"], json!("hooks"), "{read}");
    browser.type_into("#auth-basic-password", "pw-2").await;
    browser.click("button[type=submit]", "Save changes").await;
    wait_for_text_in(&browser, "[data-test=option-auth]", "hooks2").await;
    test_send(&app, &token, &id).await;
    let got = receiver
        .wait_for(2, Duration::from_secs(10))
        .await
        .expect("sent");
    assert_eq!(
        got[1].header("authorization"),
        Some(basic("hooks2", "pw-2").as_str())
    );

    // None removes it.
    browser.goto(&edit).await;
    browser.wait_for_text("Events to send").await;
    browser.click("#auth option[value=none]", "").await;
    browser.click("button[type=submit]", "Save changes").await;
    wait_for_text_in(&browser, "[data-test=option-auth]", "None").await;
    let (_, read) = app.get(&format!("/api/v1/webhooks/{id}"), &token).await;
    assert_eq!(read["data"]["auth"], Value::Null, "{read}");
    test_send(&app, &token, &id).await;
    let got = receiver
        .wait_for(3, Duration::from_secs(10))
        .await
        .expect("sent");
    assert_eq!(got[2].header("authorization"), None);
    browser.quit().await;
    DONE
}

async fn a_client_certificate_pasted_in_the_portal_lets_deliveries_into_an_mtls_endpoint() -> Ran {
    let Some(browser) = Browser::start("portal mtls").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    let ca = TestCa::generate().expect("test CA");
    let receiver = TlsReceiver::start(&ca, true).await.expect("TLS receiver");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).expect("CA file");
    let app = spawn_app_with(&[
        ("WEBHOOK_CA_FILE", ca_file.to_str().expect("path")),
        ("WEBHOOK_TLS_ROOTS", "both"),
    ])
    .await;
    let link = portal_link(&app, "mtls-user", json!({})).await;
    let token = link["token"].as_str().expect("token").to_string();
    let webhook = app
        .create_webhook(&token, &receiver.url("/mtls"), &["user.*"], None)
        .await;
    let id = webhook["id"].as_str().expect("id").to_string();
    browser.goto(link["url"].as_str().expect("url")).await;
    browser.wait_for_text("/mtls").await;

    browser
        .goto(&format!("{}/portal#/endpoints/{id}/edit", app.base))
        .await;
    browser.wait_for_text("Events to send").await;
    browser.click("summary", "Advanced").await;
    browser.click("#auth option[value=mtls]", "").await;
    browser
        .type_into("#auth-mtls-certificate", &ca.client.certificate)
        .await;
    browser
        .type_into("#auth-mtls-privateKey", &ca.client.private_key)
        .await;
    browser.click("button[type=submit]", "Save changes").await;
    let shown = wait_for_text_in(&browser, "[data-test=option-auth]", "Client certificate").await;
    assert!(shown.contains("Private key: ********"), "{shown}");
    let key_line = ca
        .client
        .private_key
        .lines()
        .nth(1)
        .expect("a line of the key")
        .to_string();
    assert!(!browser.main_text().await.contains(&key_line));

    // The endpoint demands the certificate; the page's test event gets in.
    browser.click("button", "Send test event").await;
    browser.wait_for_text("HTTP 200").await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].client_certificate);
    browser.quit().await;
    DONE
}

async fn an_endpoint_created_with_oauth2_in_the_portal_gets_its_bearer_token() -> Ran {
    let Some(browser) = Browser::start("portal oauth2").await else {
        return skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    let app = spawn_app().await;
    let token_server = Receiver::start(Behavior::Body {
        status: 200,
        body: br#"{"access_token":"tok-from-portal","token_type":"Bearer","expires_in":3600}"#
            .to_vec(),
    })
    .await
    .expect("token server");
    let endpoint = Receiver::start(Behavior::RequireHeader {
        name: "authorization".into(),
        value: "Bearer tok-from-portal".into(),
    })
    .await
    .expect("endpoint");
    let link = portal_link(&app, "oauth-user", json!({})).await;
    let token = link["token"].as_str().expect("token").to_string();
    browser.goto(link["url"].as_str().expect("url")).await;
    browser.click("a", "Add your first endpoint").await;
    browser.wait_for_text("Events to send").await;
    browser.type_into("#url", &endpoint.url("/oauth")).await;
    browser.click("input[value='*']", "").await;
    browser.click("summary", "Advanced").await;
    browser.click("#auth option[value=oauth2]", "").await;
    browser
        .type_into("#auth-oauth2-tokenUrl", &token_server.url("/token"))
        .await;
    browser
        .type_into("#auth-oauth2-clientId", "svc-client")
        .await;
    browser
        .type_into("#auth-oauth2-clientSecret", "client-secret-from-portal")
        .await;
    browser
        .type_into("#auth-oauth2-scope", "webhooks:write")
        .await;
    browser
        .click("button[type=submit]", "Create endpoint")
        .await;
    browser.click("a", "Continue to the endpoint").await;
    let shown = wait_for_text_in(&browser, "[data-test=option-auth]", "OAuth2").await;
    assert!(
        shown.contains("svc-client")
            && shown.contains("webhooks:write")
            && shown.contains("Client secret: ********")
            && !shown.contains("client-secret-from-portal"),
        "{shown}"
    );
    let webhooks = webhooks_of(&app, &token).await;
    assert_eq!(webhooks[0]["auth"]["audience"], Value::Null, "{webhooks:?}");

    // The page's test event: a token from the token URL, then the endpoint.
    browser.click("button", "Send test event").await;
    browser.wait_for_text("HTTP 200").await;
    let grants = token_server
        .wait_for(1, Duration::from_secs(10))
        .await
        .expect("a token request");
    let grant = String::from_utf8_lossy(&grants[0].body).to_string();
    assert!(
        grant.contains("grant_type=client_credentials") && grant.contains("scope=webhooks"),
        "{grant}"
    );
    use base64::Engine as _;
    let client =
        base64::engine::general_purpose::STANDARD.encode("svc-client:client-secret-from-portal");
    assert_eq!(
        grants[0].header("authorization"),
        Some(format!("Basic {client}").as_str())
    );
    assert_eq!(endpoint.count(), 1);
    browser.quit().await;
    DONE
}

/// The tests of this file, for the binary's harness.
pub fn tests() -> Vec<crate::harness::Test> {
    crate::tests![
        a_user_manages_an_endpoint_and_its_deliveries_in_the_portal,
        expired_and_forged_links_are_refused,
        an_operator_sees_every_users_failing_endpoints,
        the_operator_overview_charts_the_platform_over_time,
        a_log_beyond_the_count_cap_says_or_more_and_still_pages,
        an_endpoint_whose_circuit_is_open_says_its_deliveries_are_held,
        the_log_and_the_chart_work_on_postgresql,
        the_portal_works_in_an_iframe_of_an_allowed_origin_only,
        the_api_reference_renders_every_route_without_another_host,
        a_user_sets_a_filter_and_a_rate_limit_in_the_advanced_form,
        custom_headers_and_bearer_auth_stay_masked_and_reach_the_receiver,
        an_ed25519_endpoint_shows_its_public_key_and_read_only_links_cannot_edit,
        basic_auth_is_changed_and_removed_in_the_portal_without_losing_the_password,
        a_client_certificate_pasted_in_the_portal_lets_deliveries_into_an_mtls_endpoint,
        an_endpoint_created_with_oauth2_in_the_portal_gets_its_bearer_token,
        a_blocked_fifo_order_shows_its_head_on_the_endpoint_page,
    ]
}
