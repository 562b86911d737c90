//! Who may call what: users with the platform's JWTs on `/api/v1`, platform
//! services with the internal secret on `/internal`, and nothing else.

use std::collections::HashSet;

use crate::api_support::{Answer, call, get, hs256, now_secs, platform_token, service_token, sign};
use crate::common::{INTERNAL_SECRET, JWT_SECRET, TestApp, spawn_app, spawn_app_with};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::json;

/// Lists webhooks with a raw `Authorization` header (or none).
async fn list_with(app: &TestApp, authorization: Option<&str>) -> Answer {
    let mut headers = Vec::new();
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    crate::api_support::raw(app, Method::GET, "/api/v1/webhooks", &headers, "").await
}

fn unauthorized(answer: &Answer, code: &str, fragment: &str) {
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(answer.error_code(), code, "{}", answer.body);
    assert!(
        answer.message().contains(fragment),
        "'{}' should contain '{fragment}'",
        answer.message()
    );
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
}

fn b64(value: serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn bad_credentials_get_distinct_401s() {
    let app = spawn_app().await;
    let now = now_secs();
    let claims = |exp: i64| json!({"userId": "u-1", "roles": ["user"], "exp": exp});

    let missing = list_with(&app, None).await;
    unauthorized(&missing, "AUTH_MISSING", "Missing Authorization header");
    let basic = list_with(&app, Some("Basic dXNlcjpwYXNz")).await;
    unauthorized(&basic, "AUTH_MISSING", "Bearer scheme");
    let malformed = list_with(&app, Some("Bearer not-a-jwt")).await;
    unauthorized(&malformed, "AUTH_MALFORMED", "Malformed token");
    let garbled = list_with(&app, Some("Bearer aaaa.bbbb.cccc")).await;
    unauthorized(&garbled, "AUTH_MALFORMED", "Malformed token");
    let expired = list_with(
        &app,
        Some(&format!("Bearer {}", service_token(&claims(now - 3600)))),
    )
    .await;
    unauthorized(&expired, "AUTH_EXPIRED", "expired");
    let forged = list_with(
        &app,
        Some(&format!(
            "Bearer {}",
            hs256(&claims(now + 600), b"some-other-key-0123456789abcdef")
        )),
    )
    .await;
    unauthorized(&forged, "AUTH_INVALID_SIGNATURE", "signature");

    // Four different failures, four different messages.
    let messages: HashSet<&str> = [&missing, &malformed, &expired, &forged]
        .iter()
        .map(|a| a.message())
        .collect();
    assert_eq!(messages.len(), 4, "{messages:?}");

    // alg: none, with and without a signature part.
    let header = b64(json!({"alg": "none", "typ": "JWT"}));
    let payload = b64(claims(now + 600));
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        let answer = list_with(&app, Some(&format!("Bearer {token}"))).await;
        assert_eq!(answer.status, 401, "{token}: {}", answer.body);
        assert_eq!(answer.error_code(), "AUTH_MALFORMED");
    }
    let none = list_with(&app, Some(&format!("Bearer {header}.{payload}."))).await;
    assert!(none.message().contains("none"), "{}", none.message());
    // The right secret under another HMAC algorithm is still refused.
    let hs512 = sign(
        Algorithm::HS512,
        &claims(now + 600),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    );
    let answer = list_with(&app, Some(&format!("Bearer {hs512}"))).await;
    unauthorized(&answer, "AUTH_MALFORMED", "HS512");
    // No exp: refused, naming the claim.
    let no_exp = service_token(&json!({"userId": "u-1"}));
    let answer = list_with(&app, Some(&format!("Bearer {no_exp}"))).await;
    unauthorized(&answer, "AUTH_MALFORMED", "exp");
    // Not valid yet.
    let early = service_token(&json!({"userId": "u-1", "exp": now + 600, "nbf": now + 300}));
    let answer = list_with(&app, Some(&format!("Bearer {early}"))).await;
    unauthorized(&answer, "AUTH_NOT_YET_VALID", "not valid yet");
    // No user id in any of the accepted claims.
    let anonymous = service_token(&json!({"email": "x@example.com", "exp": now + 600}));
    let answer = list_with(&app, Some(&format!("Bearer {anonymous}"))).await;
    unauthorized(&answer, "AUTH_MALFORMED", "'userId', 'sub' or 'id'");

    // A few seconds of clock skew are tolerated; minutes are not.
    let skewed = service_token(&claims(now - 5));
    assert_eq!(
        list_with(&app, Some(&format!("Bearer {skewed}")))
            .await
            .status,
        200
    );
    // The control: a good token is accepted.
    let good = service_token(&claims(now + 600));
    assert_eq!(
        list_with(&app, Some(&format!("Bearer {good}")))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_user_id_comes_from_user_id_then_sub_then_id() {
    let app = spawn_app().await;
    let exp = now_secs() + 600;
    let cases = [
        (
            json!({"sub": "not-this", "userId": "from-user-id", "id": "nor-this", "exp": exp}),
            "from-user-id",
        ),
        (
            json!({"sub": "from-sub", "id": "not-this", "exp": exp}),
            "from-sub",
        ),
        (json!({"id": "from-id", "exp": exp}), "from-id"),
        (json!({"id": 4242, "exp": exp}), "4242"),
    ];
    for (claims, user) in cases {
        let token = service_token(&claims);
        let hook = app
            .create_webhook(&token, "http://127.0.0.1:9/x", &["*"], None)
            .await;
        assert_eq!(hook["userId"], user, "{claims}");
    }
    // Tokens from different issuers naming the same user see the same webhooks.
    let platform = platform_token("from-sub", false);
    let list = get(&app, "/api/v1/webhooks", &platform).await;
    assert_eq!(list.body["meta"]["total"], 1, "{}", list.body);
    assert_eq!(list.body["data"][0]["userId"], "from-sub");
    let cli = app.token("from-user-id", false);
    assert_eq!(
        get(&app, "/api/v1/webhooks", &cli).await.body["meta"]["total"],
        1
    );
    // auth-service's own token shape, with a UUID user id.
    let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let token = platform_token(uuid, false);
    let hook = app
        .create_webhook(&token, "http://127.0.0.1:9/u", &["user.*"], None)
        .await;
    assert_eq!(hook["userId"], uuid);
}

#[tokio::test]
async fn an_admin_sees_every_users_webhooks() {
    let app = spawn_app().await;
    let alice = app.token("alice", false);
    let bob = platform_token("bob", false);
    let admin = platform_token("root", true);
    let a = app
        .create_webhook(&alice, "http://127.0.0.1:9/a", &["*"], None)
        .await;
    app.create_webhook(&bob, "http://127.0.0.1:9/b", &["*"], None)
        .await;

    let mine = get(&app, "/api/v1/webhooks", &alice).await;
    assert_eq!(mine.body["meta"]["total"], 1);
    let everyone = get(&app, "/api/v1/webhooks", &admin).await;
    assert_eq!(everyone.status, 200, "{}", everyone.body);
    assert_eq!(everyone.body["meta"]["total"], 2);
    let owners: HashSet<&str> = everyone.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["userId"].as_str().unwrap())
        .collect();
    assert_eq!(owners, HashSet::from(["alice", "bob"]));
    let id = a["id"].as_str().unwrap();
    let read = get(&app, &format!("/api/v1/webhooks/{id}"), &admin).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["data"]["userId"], "alice");
    // The CLI's --admin token is an admin token too.
    let cli_admin = app.token("cli-root", true);
    assert_eq!(
        get(&app, "/api/v1/webhooks", &cli_admin).await.body["meta"]["total"],
        2
    );
}

#[tokio::test]
async fn user_tokens_and_the_internal_secret_do_not_cross() {
    let app = spawn_app().await;
    let user = app.token("crossing-user", false);
    let admin = app.token("crossing-admin", true);
    let event = json!({"eventType": "user.created", "userId": "crossing-user", "data": {}});

    // The internal secret is not a user credential.
    let answer = call(
        &app,
        Method::GET,
        "/api/v1/webhooks",
        Some(INTERNAL_SECRET),
        None,
    )
    .await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(answer.error_code(), "AUTH_MALFORMED");
    let answer = call(
        &app,
        Method::POST,
        "/api/v1/webhooks",
        Some(INTERNAL_SECRET),
        Some(json!({"url": "http://127.0.0.1:9/x", "eventTypes": ["*"]})),
    )
    .await;
    assert_eq!(answer.status, 401);

    // User tokens, even an admin's, are not accepted on /internal.
    for token in [&user, &admin] {
        let answer = call(
            &app,
            Method::POST,
            "/internal/webhooks/trigger",
            Some(token),
            Some(event.clone()),
        )
        .await;
        unauthorized(
            &answer,
            "AUTH_INVALID_CREDENTIALS",
            "internal service secret",
        );
    }
    let wrong = call(
        &app,
        Method::POST,
        "/internal/webhooks/trigger",
        Some("not-the-internal-secret"),
        Some(event.clone()),
    )
    .await;
    unauthorized(
        &wrong,
        "AUTH_INVALID_CREDENTIALS",
        "Invalid internal service credentials",
    );
    let missing = call(
        &app,
        Method::POST,
        "/internal/webhooks/trigger",
        None,
        Some(event.clone()),
    )
    .await;
    unauthorized(&missing, "AUTH_MISSING", "Missing Authorization header");
    // The control: the internal secret works there.
    let (status, body) = app
        .trigger("user.created", "crossing-user", json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
}

const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1KrN+dyYnGm+7QYs
uLBJGDjCFq5/qf3k2So7MpX3R2ihRANCAARv6k6Ap6YPWJzWWzjbN7tGerC55PdT
u9x603OC+f/RCHiuq8Xikf+bsB1lbnwcBZGQ5Ymy4kH3OeE+rcsfGfnc
-----END PRIVATE KEY-----
";
const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEb+pOgKemD1ic1ls42ze7RnqwueT3
U7vcetNzgvn/0Qh4rqvF4pH/m7AdZW58HAWRkOWJsuJB9znhPq3LHxn53A==
-----END PUBLIC KEY-----
";
const OTHER_EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgdZw5FGTHTJYcT10R
tBdJI74+7W6wqM0xVwffThAYsyihRANCAAQHDGP9+ykswTXzZlYIcP0etKJt8293
s/2bNn14gbfTWMBBqpKls2Jp/OLnQDuufu/Py2JGlcSZxwGt4Bzy9tCE
-----END PRIVATE KEY-----
";

#[tokio::test]
async fn es256_tokens_verify_with_the_public_key_and_algorithm_confusion_fails() {
    // Public-key verification only: no JWT_SECRET at all.
    let app = spawn_app_with(&[("JWT_SECRET", ""), ("JWT_PUBLIC_KEY", EC_PUBLIC)]).await;
    let claims = json!({"sub": "es-user", "roles": ["user"], "exp": now_secs() + 600});
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let good = sign(Algorithm::ES256, &claims, &key);
    let answer = list_with(&app, Some(&format!("Bearer {good}"))).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let other = EncodingKey::from_ec_pem(OTHER_EC_PRIVATE.as_bytes()).unwrap();
    let forged = sign(Algorithm::ES256, &claims, &other);
    let answer = list_with(&app, Some(&format!("Bearer {forged}"))).await;
    unauthorized(&answer, "AUTH_INVALID_SIGNATURE", "signature");

    // The classic confusion: HS256 keyed with the public key's text.
    let confused = hs256(&claims, EC_PUBLIC.as_bytes());
    let answer = list_with(&app, Some(&format!("Bearer {confused}"))).await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    let confused = hs256(&claims, EC_PUBLIC.trim_end().as_bytes());
    assert_eq!(
        list_with(&app, Some(&format!("Bearer {confused}")))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn with_both_keys_an_hs256_token_keyed_with_the_public_key_fails() {
    let app = spawn_app_with(&[("JWT_PUBLIC_KEY", EC_PUBLIC)]).await;
    let claims = json!({"userId": "mixed", "exp": now_secs() + 600});
    let confused = hs256(&claims, EC_PUBLIC.as_bytes());
    let answer = list_with(&app, Some(&format!("Bearer {confused}"))).await;
    unauthorized(&answer, "AUTH_INVALID_SIGNATURE", "signature");
    // Both kinds of genuine token work side by side.
    let es = sign(
        Algorithm::ES256,
        &claims,
        &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
    );
    assert_eq!(
        list_with(&app, Some(&format!("Bearer {es}"))).await.status,
        200
    );
    let hs = service_token(&claims);
    assert_eq!(
        list_with(&app, Some(&format!("Bearer {hs}"))).await.status,
        200
    );
}

// A throwaway RSA key pair made for this test.
const RSA_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDXh4dJTLz6QhCy\nSlephR3lcV4WTCcxhnFsts/MV7dYITFWqwBO6EH7lAF28URLT+LsFUvyGjlVmnFV\n2lEPi2fgR0xSs85V5sQ87kG0V7C4TulQWJuFkqsdPhppmRespSIa+/t3ETDlGZGX\nYtiXd0Mz3jq1rdFJwJkW2PvlnGJ3c+K9W7Kt5dPzhniAp4iuVUkdAoiEGLUF31gi\nxNNohzW9RbOYUYqkPYrKQZjhGrP4FhWY3mPpmfLxhoks5x+YakrsAg+bh6wj5odM\nQzOHtWYpIvZHYne4R/Juka6JAnWrs4EKFUeETs3bkNKQlZCCuP7ir8X30NbUEr6Z\nkhXwTbMZAgMBAAECggEAAwi4zj7FjptVUKvhvzSXxrtZaPnHoneYoKsT0qCt0iXe\nI9tykhR3G1N1JXzA1UjpskucHwDLVlRp1zIkf9IaqKpa8sjDtUCzT1fw9ljhV2g1\npMh+i1CU1pZMI7jrP6Zads6dzApiqb2kp6DVWOUtqG0ENBBfQ3PHOUOy4MOvvNaO\n7nTHEV3LtHagRmYh5v5lCOZTWcZ3y+NCqQywtj5/gdLyvUZ3Grm9Bq9Sd1BLk/ib\nX/PR1lxkPAHuP+g//nPbGpErtuczlrQ25mYu9MBxPKop6M2gz+vtAuZODuXm/ztG\nPJ4PZmjVnzkXF6YjWoq1mCcUzyxOHLLIQlTO9DEAwQKBgQDuG0ftYviA/a8dwinc\nRU6vjP5Dm5o9k0iLqYIhwllMh7Q/bSf6L54pH6pDU/6oYfDMB9nlQqMWdxA7Ef8w\nSLxF1AeNDqm75ukwgkF9iGAUqZmeiM7rOuLKmFydid3w3IPYiFk/0MW0dFc8sD0V\nSTqdBghHQex+nvrJoP1LtyiW+QKBgQDnuefgKx+2pKHZl7E5f3FInjro6wqq3jaL\npFWywQ9XZU6zrEvjyS65NcRn/TtuReEF+7OZCEAoymxt6/cng7P4WdPQzX9L20c2\neilK0KEBLwxREihFI91HDj1+uwgm+706m5i9IvLhYdkA8OhPAkHgaKQs/a6GxvCF\nIzPBCxJlIQKBgQDO+zQZbbFsIBp8Ge7dpfnyrPPSvY7k/AVSMvYGdrW9yzGq+S6J\nU59/TCFsCbYTlaAHHMQTgUvYGYQodUqKJJBVey1dN2PhDaekHXbkswoirBP4NiD5\nZuUDDFNmNxSRbn/GWTCMQuW6KnAzN1jCCjhDi5zipLH6mCSV5baKfRtxsQKBgQDl\nsz7K03SIVAGr89ZVrKLa3R6ALB1S6xseqTPaEc3nUCEHsc84aQDLzyR2AGudD9/T\nUoHhPHB8/ssk2zcQEFmh4Uk6Pbnls+OPeODdrJks1zpaUqlggACkotUKftPB8ODO\n69YoBjDEgX3elO9zAkXS8WdswbrzFtjs4Mw4m4UMgQKBgH85v0TH13mSREwUws/F\nKa0/bZZHWtuxqw90NU0GP2K12uZxqwF0ej57l8bUxkvLNV8Z2jw9kl8FXDreFsqu\nmPIUqIOnvQ/ITzK5fq6d+su8/61h2brIbWPI6l313Qt5LaOfO+BtgxJsnViLeAWX\n0OlEVGmpekwpJVYRL2/V9ugs\n-----END PRIVATE KEY-----\n";
const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA14eHSUy8+kIQskpXqYUd\n5XFeFkwnMYZxbLbPzFe3WCExVqsATuhB+5QBdvFES0/i7BVL8ho5VZpxVdpRD4tn\n4EdMUrPOVebEPO5BtFewuE7pUFibhZKrHT4aaZkXrKUiGvv7dxEw5RmRl2LYl3dD\nM946ta3RScCZFtj75Zxid3PivVuyreXT84Z4gKeIrlVJHQKIhBi1Bd9YIsTTaIc1\nvUWzmFGKpD2KykGY4Rqz+BYVmN5j6Zny8YaJLOcfmGpK7AIPm4esI+aHTEMzh7Vm\nKSL2R2J3uEfybpGuiQJ1q7OBChVHhE7N25DSkJWQgrj+4q/F99DW1BK+mZIV8E2z\nGQIDAQAB\n-----END PUBLIC KEY-----\n";

#[tokio::test]
async fn rs256_tokens_verify_with_the_public_key_and_hs256_keyed_with_it_fails() {
    let app = spawn_app_with(&[("JWT_PUBLIC_KEY", RSA_PUBLIC)]).await;
    let claims = json!({"userId": "rs-user", "roles": ["user"], "exp": now_secs() + 600});
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let good = sign(Algorithm::RS256, &claims, &key);
    let answer = list_with(&app, Some(&format!("Bearer {good}"))).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Algorithm confusion: HS256 with the RSA public key as the HMAC secret.
    for secret in [RSA_PUBLIC, RSA_PUBLIC.trim_end()] {
        let confused = hs256(&claims, secret.as_bytes());
        let answer = list_with(&app, Some(&format!("Bearer {confused}"))).await;
        unauthorized(&answer, "AUTH_INVALID_SIGNATURE", "signature");
    }
    // A tampered signature is refused.
    let mut tampered = good.clone();
    tampered.truncate(good.len() - 4);
    tampered.push_str("AAAA");
    let answer = list_with(&app, Some(&format!("Bearer {tampered}"))).await;
    assert_eq!(answer.status, 401, "{}", answer.body);
}
