//! `/metrics` after known traffic shows the expected counts.

mod support;

use std::path::Path;
use std::sync::Arc;

use stash_webhook::functions::FileSource;
use stash_webhook::metrics::Metrics;
use support::{create_naming, fixture, Options, Webhook, FUNCTIONS};

#[tokio::test]
async fn metrics_count_reviews_lookups_and_refusals() {
    let metrics = Metrics::default();
    let source =
        Arc::new(FileSource::from_text(FUNCTIONS, Path::new("f.yaml"), metrics.clone()).unwrap());
    let options = Options {
        tasks: Some(source.clone()),
        ..Options::default()
    };
    let webhook = Webhook::start(source, metrics.clone(), options).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    tokio::spawn(stash_webhook::http::serve_metrics(
        listener,
        metrics,
        std::future::pending(),
    ));

    for _ in 0..2 {
        assert_eq!(
            webhook.review(fixture("backupconfiguration-create")).await["allowed"],
            true
        );
    }
    assert_eq!(
        webhook.review(create_naming("ghost")).await["allowed"],
        false
    );
    assert_eq!(
        webhook.review(fixture("backupconfiguration-delete")).await["allowed"],
        true
    );
    assert_eq!(webhook.post(&webhook.client(), "{").await.status(), 400);

    let response = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    for line in [
        "stash_webhook_reviews_total{kind=\"BackupConfiguration\",operation=\"CREATE\",verdict=\"allowed\"} 2",
        "stash_webhook_reviews_total{kind=\"BackupConfiguration\",operation=\"CREATE\",verdict=\"denied\"} 1",
        "stash_webhook_reviews_total{kind=\"BackupConfiguration\",operation=\"DELETE\",verdict=\"allowed\"} 1",
        "stash_webhook_rejected_requests_total{code=\"400\"} 1",
        "stash_webhook_review_duration_seconds_count 4",
        // Each CREATE names an executor's Function and a Task, whose one step names another.
        "stash_webhook_lookups_total{resource=\"functions\",source=\"file\",result=\"found\"} 5",
        "stash_webhook_lookups_total{resource=\"functions\",source=\"file\",result=\"not_found\"} 1",
        "stash_webhook_lookups_total{resource=\"tasks\",source=\"file\",result=\"found\"} 3",
        "stash_webhook_cache_size{resource=\"functions\"} 3",
        "stash_webhook_cache_size{resource=\"tasks\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    // The test certificate is valid for one day: it expires a day from now, give or take the
    // test's own run time and the certificate's backdating.
    let not_after: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("stash_webhook_certificate_not_after_timestamp_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let left = not_after - now;
    assert!((80_000..=86_400).contains(&left), "{left}");
}
