//! The server end to end over real TLS: recorded reviews in, AdmissionReviews out, in both
//! protocol versions and both HTTP versions; and every kind of bad request refused with a 4xx.

mod support;

use serde_json::{json, Value};
use stash_webhook::http::Limits;
use support::{create_naming, fixture, Options, Webhook, FUNCTIONS};

const GHOST: &str = "spec.hooks.preBackup.executor.functionName: Function \"ghost\" not found: create the Function, or fix the name (list them with: kubectl get functions.stash.appscode.com)";

#[tokio::test]
async fn allows_a_recorded_create_whose_function_exists() {
    let webhook = Webhook::with_functions(FUNCTIONS).await;
    let response = webhook
        .post(&webhook.client(), fixture("backupconfiguration-create"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.headers()["content-type"], "application/json");
    let review: Value = response.json().await.unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(
        review["response"]["uid"],
        "2f4654dc-4eb5-4f5c-99a7-7fac85a06744"
    );
    assert_eq!(review["response"]["allowed"], true);
}

#[tokio::test]
async fn denies_missing_function_with_field_path_over_http1() {
    let webhook = Webhook::with_functions(FUNCTIONS).await;
    let response = webhook
        .post(&webhook.http1_client(), create_naming("ghost"))
        .await;
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    let review: Value = response.json().await.unwrap();
    let r = &review["response"];
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    assert_eq!(r["status"]["reason"], "Forbidden");
    assert_eq!(r["status"]["message"], GHOST);
}

#[tokio::test]
async fn denies_function_without_image() {
    let webhook = Webhook::with_functions(FUNCTIONS).await;
    let r = webhook.review(create_naming("no-image-fn")).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        r["status"]["message"],
        "spec.hooks.preBackup.executor.functionName: Function \"no-image-fn\" has no container image (its spec.image is not set): give the Function an image (kubectl edit functions.stash.appscode.com no-image-fn), or name another Function"
    );
}

#[tokio::test]
async fn answers_v1beta1_reviews_in_v1beta1() {
    let webhook = Webhook::with_functions(FUNCTIONS).await;
    let body =
        create_naming("ghost").replace("admission.k8s.io/v1\"", "admission.k8s.io/v1beta1\"");
    let response = webhook.post(&webhook.client(), body).await;
    let review: Value = response.json().await.unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(
        review["response"]["uid"],
        "2f4654dc-4eb5-4f5c-99a7-7fac85a06744"
    );
    assert_eq!(review["response"]["allowed"], false);
    assert_eq!(review["response"]["status"]["message"], GHOST);
}

#[tokio::test]
async fn judges_dry_run_the_same_way() {
    let webhook = Webhook::with_functions(FUNCTIONS).await;
    let ok = webhook
        .review(fixture("backupconfiguration-create-dryrun"))
        .await;
    assert_eq!(ok["allowed"], true);
    let denied = webhook
        .review(
            fixture("backupconfiguration-create-dryrun").replace("mysql-hook-executor", "ghost"),
        )
        .await;
    assert_eq!(denied["allowed"], false);
    assert_eq!(denied["status"]["message"], GHOST);
}

#[tokio::test]
async fn allows_deletes_and_kinds_it_does_not_judge() {
    let webhook = Webhook::with_functions(FUNCTIONS).await;
    let delete = webhook
        .review(fixture("backupconfiguration-delete").replace("mysql-hook-executor", "ghost"))
        .await;
    assert_eq!(delete["uid"], "fb570215-132f-4aa7-a2c8-00d55e567761");
    assert_eq!(delete["allowed"], true);
    let function = webhook.review(fixture("function-create")).await;
    assert_eq!(function["allowed"], true);
    let function_delete = webhook.review(fixture("function-delete")).await;
    assert_eq!(function_delete["allowed"], true);
}

#[tokio::test]
async fn update_keeping_a_deleted_function_is_allowed_with_a_warning() {
    // The recorded UPDATE names mysql-hook-executor in both object and oldObject; serve no such
    // Function, and no Tasks at all: its task name is not checked.
    let webhook = Webhook::with_functions("").await;
    let r = webhook.review(fixture("backupconfiguration-update")).await;
    assert_eq!(r["allowed"], true);
    assert_eq!(
        r["warnings"],
        json!([
            "spec.hooks.preBackup.executor.functionName: Function \"mysql-hook-executor\" not found; allowed because this reference is unchanged, but the hook will fail until it is fixed",
            "spec.task.name: Task \"mysql-backup-8.0.14\" not checked: there are no Tasks to check it against (the cluster does not serve them: their CRD is not installed; or the catalog and files checked hold none)"
        ])
    );
}

async fn refused(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn refuses_bad_requests_with_a_clear_4xx() {
    let webhook = Webhook::with_functions(FUNCTIONS).await;
    let client = webhook.client();
    let post = |body: &'static str| {
        client
            .post(webhook.url("/validate"))
            .header("Content-Type", "application/json")
            .body(body)
    };

    let (status, text) = refused(post("{\"kind\": ")).await;
    assert_eq!(status, 400);
    assert!(
        text.starts_with("the body is not a valid AdmissionReview: EOF while parsing"),
        "{text}"
    );

    let (status, text) = refused(post("")).await;
    assert_eq!(
        (status, text.as_str()),
        (
            400,
            "the body is empty: POST an AdmissionReview (admission.k8s.io/v1 or v1beta1) as JSON\n"
        )
    );

    let (status, text) = refused(post(
        r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v2","request":{"uid":"u","kind":{"kind":"X"},"operation":"CREATE"}}"#,
    ))
    .await;
    assert_eq!(
        (status, text.as_str()),
        (400, "apiVersion \"admission.k8s.io/v2\" is not supported: use \"admission.k8s.io/v1\" or \"admission.k8s.io/v1beta1\"\n")
    );

    let (status, text) = refused(post(
        r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#,
    ))
    .await;
    assert_eq!(
        (status, text.as_str()),
        (
            400,
            "the AdmissionReview has no request: the API server sends one in every call\n"
        )
    );

    let (status, text) = refused(post(r#"["not", "a", "review"]"#)).await;
    assert_eq!(
        (status, text.as_str()),
        (400, "the body is not a JSON object: POST an AdmissionReview (admission.k8s.io/v1 or v1beta1) as JSON\n")
    );

    let (status, text) = refused(
        client
            .post(webhook.url("/validate"))
            .header("Content-Type", "text/yaml")
            .body("kind: AdmissionReview"),
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (
            415,
            "Content-Type must be application/json: POST an AdmissionReview as JSON\n"
        )
    );

    let (status, _) = refused(client.get(webhook.url("/validate"))).await;
    assert_eq!(status, 405);
    let (status, _) = refused(
        client
            .put(webhook.url("/validate"))
            .header("Content-Type", "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!(status, 405);
    let (status, _) = refused(client.get(webhook.url("/nothing-here"))).await;
    assert_eq!(status, 404);

    // The server is still healthy after all of that.
    assert_eq!(
        webhook.review(fixture("backupconfiguration-create")).await["allowed"],
        true
    );
}

#[tokio::test]
async fn refuses_oversized_bodies_declared_or_streamed() {
    let metrics = stash_webhook::metrics::Metrics::default();
    let source = stash_webhook::functions::FileSource::from_text(
        FUNCTIONS,
        std::path::Path::new("f.yaml"),
        metrics.clone(),
    )
    .unwrap();
    let options = Options {
        limits: Limits {
            max_body_bytes: 64 * 1024,
            ..Limits::default()
        },
        ..Options::default()
    };
    let webhook = Webhook::start(std::sync::Arc::new(source), metrics, options).await;
    let big = format!(
        "{{\"kind\":\"AdmissionReview\",\"pad\":\"{}\"}}",
        "x".repeat(200 * 1024)
    );

    // With a declared length (Content-Length over HTTP/1.1, and over HTTP/2, where the client
    // sends it too). That this refusal comes before the body is read is shown in tests/abuse.rs.
    for (client, protocol) in [
        (webhook.http1_client(), reqwest::Version::HTTP_11),
        (webhook.client(), reqwest::Version::HTTP_2),
    ] {
        let response = webhook.post(&client, big.clone()).await;
        assert_eq!(response.version(), protocol);
        assert_eq!(response.status(), 413, "{protocol:?}");
        assert_eq!(
            response.text().await.unwrap(),
            "the body is larger than the 65536 byte limit (--max-body-bytes)\n"
        );
    }

    // Chunked, with no length announced: cut off once the limit is crossed.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(8192)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let response = webhook.post(&webhook.http1_client(), body).await;
    assert_eq!(response.status(), 413);

    // A normal review still goes through.
    assert_eq!(
        webhook.review(fixture("backupconfiguration-create")).await["allowed"],
        true
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let webhook = Webhook::with_functions(FUNCTIONS).await;
    let client = webhook.client();
    let healthz = client.get(webhook.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = client.get(webhook.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 200);
}

/// Parameters over HTTPS, with Functions from a file: a variable the Function reads that the
/// hook leaves unset is denied; a parameter it never reads is a warning kubectl prints.
#[tokio::test]
async fn parameters_are_checked_against_the_variables_the_function_reads() {
    let webhook = Webhook::with_functions(
        r#"
apiVersion: stash.appscode.com/v1beta1
kind: Function
metadata: {name: mysql-hook-executor}
spec: {image: "appscode/mysql-hook:8.0.14", args: ["--param-a=${a}", "--out=${outputDir}"]}
---
apiVersion: stash.appscode.com/v1beta1
kind: Task
metadata: {name: mysql-backup-8.0.14}
spec: {steps: [{name: mysql-hook-executor, params: [{name: a, value: x}, {name: outputDir, value: /tmp}]}]}
"#,
    )
    .await;
    // The recorded review sets params a and c.
    let r = webhook.review(fixture("backupconfiguration-create")).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        r["status"]["message"],
        "spec.hooks.preBackup.executor.params: Function \"mysql-hook-executor\" reads ${outputDir}, which this hook does not set and Stash does not provide: add params.outputDir, or give it a default in the Function (${outputDir:=...})"
    );
    assert_eq!(
        r["warnings"],
        serde_json::json!(["spec.hooks.preBackup.executor.params[c]: Function \"mysql-hook-executor\" does not read ${c} (it reads a, outputDir): check the name"])
    );
}
