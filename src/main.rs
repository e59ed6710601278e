//! The `stash-webhook` binary: parses flags and wires the library together.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use stash_webhook::config::{
    CertsArgs, CheckArgs, CheckOutput, Cli, Command, LogFormat, ServeArgs,
};
use stash_webhook::functions::{ClusterSource, FileSource, FunctionSource};
use stash_webhook::http::{self, App, Limits};
use stash_webhook::kubestash::referents::{Addon, AddonFunction, HookTemplate};
use stash_webhook::metrics::Metrics;
use stash_webhook::references::index::ReferenceIndex;
use stash_webhook::references::protect::{self, Protector};
use stash_webhook::references::{self, audit};
use stash_webhook::rules::tasks::Task;
use stash_webhook::rules::Policy;
use stash_webhook::sources::{list, ClusterSource as Watched, Source};
use stash_webhook::tls::{TlsFiles, TlsSource};
use stash_webhook::validator::KubeStashSources;
use stash_webhook::validator::Validator;
use stash_webhook::{certs, check, EXAMPLE_FUNCTIONS};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A review makes a few dozen small allocations, each freed before its answer is sent: mimalloc's
/// per-thread free lists serve them with less work than the system allocator's arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format, &args.log)?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(serve(*args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Certs(args) => certs_command(&args).map(|()| ExitCode::SUCCESS),
        Command::Check(args) => Ok(check_command(&args)),
    }
}

/// `check`: judges the inputs and exits 0, 1 or 2 (see `check --help`).
fn check_command(args: &CheckArgs) -> ExitCode {
    let inputs = check::Inputs {
        paths: args.filenames.clone(),
        recursive: args.recursive,
    };
    let (files, mut errors) = check::read_inputs(&inputs);
    let mut catalog = check::catalog_in(&files);
    if let Some(path) = &args.functions_file {
        // Read as the inputs are, so its errors read the same.
        let (extra, unreadable) = check::read_inputs(&check::Inputs {
            paths: vec![path.clone()],
            recursive: false,
        });
        catalog.extend(check::catalog_in(&extra));
        errors.extend(unreadable);
    }
    if args.cluster {
        let listed = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(async {
                    let client = kube::Client::try_default().await.map_err(|e| {
                        format!("cannot configure the Kubernetes client (KUBECONFIG): {e}")
                    })?;
                    let functions = check::list_functions(client.clone())
                        .await
                        .map_err(|e| format!("cannot list Functions: {e}"))?;
                    let tasks = check::list_tasks(client.clone())
                        .await
                        .map_err(|e| format!("cannot list Tasks: {e}"))?;
                    let cannot = |what: &'static str| move |e| format!("cannot list {what}: {e}");
                    Ok::<_, String>(check::Catalog {
                        functions,
                        tasks,
                        addons: list::<Addon>(client.clone())
                            .await
                            .map_err(cannot("Addons"))?,
                        addon_functions: list::<AddonFunction>(client.clone())
                            .await
                            .map_err(cannot("KubeStash Functions"))?,
                        hook_templates: list::<HookTemplate>(client)
                            .await
                            .map_err(cannot("HookTemplates"))?,
                        complete: true,
                    })
                })
            });
        match listed {
            Ok(listed) => catalog.extend(listed),
            Err(reason) => errors.push(check::Unreadable {
                file: "--cluster".to_owned(),
                reason,
            }),
        }
    }
    // Addon Tasks rarely sit in a user's files: without a cluster or a Task given, names are
    // reported as not checked, never as not found.
    let tasks = if args.cluster || !catalog.tasks.is_empty() {
        check::Tasks::Known
    } else {
        check::Tasks::NotGiven
    };
    let policy = Policy {
        extra_variables: args.extra_variables.clone(),
        ..Policy::default()
    };
    let mut report = check::judge(&files, &catalog, tasks, &policy);
    report.errors.splice(0..0, errors);
    match args.output {
        CheckOutput::Text => print!("{}", report.text()),
        CheckOutput::Json => print!("{}", report.json()),
    }
    ExitCode::from(report.exit_code())
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid --log filter {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a terminal: a file or a log pipeline would store them as text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
    Ok(())
}

fn certs_command(args: &CertsArgs) -> anyhow::Result<()> {
    let written = certs::write_for_service(&args.service, &args.namespace, &args.out, args.days)?;
    if written.reused_ca {
        println!(
            "signed a new serving certificate with the existing CA in {}",
            args.out.display()
        );
    }
    for file in written.files {
        println!("wrote {}", file.display());
    }
    Ok(())
}

async fn serve(mut args: ServeArgs) -> anyhow::Result<()> {
    let metrics = Metrics::default();
    if args.dev {
        if args.listen == "0.0.0.0:8443".parse()? {
            args.listen = "127.0.0.1:8443".parse()?;
        }
        let (cert, key) = certs::write_dev(&args.dev_certs_dir)?;
        tracing::info!(ca = %args.dev_certs_dir.join("ca.crt").display(), "dev mode: wrote a fresh self-signed CA and certificate");
        args.tls_cert = Some(cert);
        args.tls_key = Some(key);
    }
    let (Some(cert), Some(key)) = (args.tls_cert.clone(), args.tls_key.clone()) else {
        anyhow::bail!("--tls-cert and --tls-key are required (or use --dev)");
    };

    let policy = Policy {
        on_lookup_failure: args.on_lookup_failure.into(),
        extra_variables: args.extra_variables.clone(),
    };
    type Tasks = Option<Arc<dyn Source<Task>>>;
    let kubestash: KubeStashSources;
    let (source, tasks, protector): (Arc<dyn FunctionSource>, Tasks, Protector) = match (
        &args.functions_file,
        args.dev,
    ) {
        (Some(path), _) => {
            let source = Arc::new(FileSource::from_path(path, metrics.clone())?);
            tracing::info!(path = %path.display(), functions = source.functions_len(), tasks = source.tasks_len(), "Functions and Tasks read from file");
            tracing::info!("protection and the reference audit are off: with a Functions file there are no objects to watch");
            kubestash = KubeStashSources::from_file(&source);
            (source.clone(), source.source_of(), Protector::off())
        }
        (None, true) => {
            let source = Arc::new(FileSource::from_text(
                EXAMPLE_FUNCTIONS,
                Path::new("manifests/examples/functions.yaml"),
                metrics.clone(),
            )?);
            tracing::info!(
                    functions = source.functions_len(),
                    tasks = source.tasks_len(),
                    "dev mode: serving the example Functions and Tasks; protection and the reference audit are off"
                );
            kubestash = KubeStashSources::from_file(&source);
            (source.clone(), source.source_of(), Protector::off())
        }
        (None, false) => {
            let client = kube::Client::try_default().await.context(
                "cannot configure the Kubernetes client (in-cluster config or KUBECONFIG)",
            )?;
            let (source, _watch) = ClusterSource::start(client.clone(), metrics.clone());
            let source = Arc::new(source);
            let (tasks, _task_watch) =
                stash_webhook::tasks::ClusterSource::start(client.clone(), metrics.clone());
            let tasks = Arc::new(tasks);
            // KubeStash's referents, unless KubeStash is off: a kind whose CRD is absent is
            // reported as not installed, and its names are not checked.
            kubestash = if args.kubestash {
                let (c, m) = (&client, &metrics);
                KubeStashSources {
                    addons: Some(Arc::new(Watched::<Addon>::start(c.clone(), m.clone()).0)),
                    functions: Some(Arc::new(
                        Watched::<AddonFunction>::start(c.clone(), m.clone()).0,
                    )),
                    hook_templates: Some(Arc::new(
                        Watched::<HookTemplate>::start(c.clone(), m.clone()).0,
                    )),
                }
            } else {
                tracing::info!("KubeStash is off (--kubestash=false): none of its kinds is read");
                KubeStashSources::default()
            };
            let index = Arc::new(ReferenceIndex::default());
            let _index_watches =
                references::index::start(client.clone(), index.clone(), metrics.clone());
            if args.audit {
                let settings = audit::Settings {
                    namespace: args.namespace.clone(),
                    identity: args.pod_name.clone().unwrap_or_else(|| {
                        std::env::var("HOSTNAME").unwrap_or_else(|_| "stash-webhook".into())
                    }),
                    interval: args.audit_interval,
                    lease_duration: args.lease_duration,
                    policy: policy.clone(),
                };
                tokio::spawn(audit::run(
                    client.clone(),
                    index.clone(),
                    source.clone(),
                    tasks.clone(),
                    args.kubestash.then(|| kubestash.clone()),
                    metrics.clone(),
                    settings,
                ));
            } else {
                tracing::info!(
                    "the audit is off (--audit=false): no Lease is taken and no Events are written"
                );
            }
            let mut protector = Protector::new(
                Some(protect::Cluster {
                    client,
                    functions: source.clone(),
                }),
                policy.on_lookup_failure,
                args.protect_timeout,
            );
            if args.kubestash {
                protector = protector.with_kubestash(kubestash.clone());
            }
            (source, Some(tasks), protector)
        }
    };

    let tls = TlsSource::load(
        TlsFiles {
            cert,
            key,
            client_ca: args.client_ca.clone(),
        },
        metrics.clone(),
    )?;
    let _reloader = tls.clone().spawn_reloader(args.cert_reload_interval);

    let mut validator = Validator::new(source, policy, args.lookup_timeout);
    if let Some(tasks) = tasks {
        validator = validator.with_tasks(tasks);
    }
    validator = validator.with_kubestash(kubestash);
    let limits = Limits {
        max_body_bytes: args.max_body_bytes,
        request_timeout: args.request_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections,
        shutdown_grace: args.shutdown_grace,
    };
    let app = App::new(validator, protector, metrics.clone(), limits);

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let metrics_task = match args.metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?;
            tracing::info!(%addr, "metrics on http://{addr}/metrics");
            Some(tokio::spawn(http::serve_metrics(
                listener,
                metrics.clone(),
                stopped(stop_rx.clone()),
            )))
        }
        None => None,
    };

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(addr = %args.listen, "serving AdmissionReviews on https://{}/validate", args.listen);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    http::serve_tls(listener, tls, app, stopped(stop_rx)).await?;
    if let Some(task) = metrics_task {
        task.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
