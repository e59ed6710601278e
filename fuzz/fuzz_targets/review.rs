//! Fuzzes the decode-and-judge path the server runs for every POST /validate: any input must
//! either be refused by `review::decode` (the server answers 400; so is every body that is not
//! UTF-8) or produce a well-formed AdmissionReview answering the request's uid. A panic or a
//! malformed answer is a crash.

#![no_main]

use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use stash_webhook::functions::FileSource;
use stash_webhook::metrics::Metrics;
use stash_webhook::review;
use stash_webhook::rules::FailurePolicy;
use stash_webhook::validator::Validator;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
});

static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| {
    let source = FileSource::from_text(
        stash_webhook::EXAMPLE_FUNCTIONS,
        Path::new("manifests/examples/functions.yaml"),
        Metrics::default(),
    )
    .expect("the example Functions load");
    Validator::new(
        Arc::new(source),
        FailurePolicy::Deny,
        Duration::from_secs(1),
    )
});

fuzz_target!(|data: &[u8]| {
    let Ok((version, request)) = review::decode(data) else {
        return;
    };
    // JSON is UTF-8: a body that is not is refused wherever the bad byte is.
    assert!(std::str::from_utf8(data).is_ok(), "a body that is not UTF-8 was accepted");
    let outcome = RUNTIME.block_on(VALIDATOR.review(&request, Some(Duration::from_secs(5))));
    let encoded =
        review::encode(version, &request.uid, outcome.reply).expect("a response always encodes");
    let answer: serde_json::Value = serde_json::from_slice(&encoded).expect("the answer is JSON");
    assert_eq!(
        answer["response"]["uid"].as_str(),
        Some(&*request.uid)
    );
    assert!(answer["response"]["allowed"].is_boolean());
});
