//! The `tracewarden` command line (interfaces.md "Command line"). Exit codes: 0 clean,
//! 1 configuration error, 2 fatal runtime error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use tracewarden::clock::SystemClock;
use tracewarden::config::{Config, LogFormat};
use tracewarden::generate::{GenerateProgress, GenerateSettings, TrafficProfile};
use tracewarden::kafka_client::KafkaConfig;
use tracewarden::model::Encoding;

/// mimalloc instead of glibc's allocator: per-thread heaps keep freed pages for reuse, where
/// glibc's arenas gave them back and faulted them in again (`clear_page` and `mprotect` on the
/// mmap lock were a quarter of the worker's time); measured in BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tracewarden",
    version,
    about = "Trace-analysis stream processor: service metrics, SLOs and tail sampling over Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume, assemble, measure, sample and forward (the main job).
    Run {
        /// Configuration file (TOML); environment variables TRACEWARDEN__SECTION__KEY override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Everything in one process: in-process Kafka, traffic generator, pipeline, HTTP endpoints.
    Demo {
        /// Configuration file (TOML, read as `run` reads it): its [[sampling.rules]], [[slo]],
        /// [window] and [metrics] replace the demo's own (defaults where the file is silent); its
        /// [kafka], [http] and [log] settings give way to the in-process cluster, --listen and the
        /// demo's console logs.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// HTTP address of the endpoints.
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: SocketAddr,
        /// Stop after this long (for example "2m"); default: until Ctrl-C.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Spans per second produced by the built-in generator.
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        /// Address of the OTLP/gRPC receiver, so an SDK can send to the demo.
        #[arg(long, default_value = "127.0.0.1:4317")]
        otlp_grpc_listen: SocketAddr,
        /// Address of the OTLP/HTTP receiver (`POST /v1/traces`), so an SDK can send to the demo.
        #[arg(long, default_value = "127.0.0.1:4318")]
        otlp_http_listen: SocketAddr,
        /// When customers-service's canary (release 1.4.0-rc1, with a bug) is rolled out, after the
        /// start ("0s": running from the start, so not a deployment). Switching faults off rolls it
        /// back; switching them on rolls it out again.
        #[arg(long, value_parser = parse_duration, default_value = "2m")]
        canary_after: Duration,
        /// UDP address of the X-Ray receiver (the X-Ray daemon protocol).
        #[arg(long, default_value = "127.0.0.1:2000")]
        xray_listen: SocketAddr,
    },
    /// Produce PetClinic-like traffic to a real Kafka.
    Generate {
        /// Bootstrap servers; default: the configuration's `kafka.brokers`.
        #[arg(long)]
        brokers: Option<String>,
        /// Reach Kafka as `run` does with this file: its `[kafka]` brokers, `[kafka.client]`
        /// (TLS, SASL, OIDC) and `[kafka.aws_msk_iam]`.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "otlp_spans")]
        topic: String,
        /// Spans per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Stop after this long; default: until Ctrl-C.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// The encoding of the messages written.
        #[arg(long, default_value = "otlp_proto", value_parser = encoding_parser())]
        encoding: Encoding,
        /// Share of fault-prone calls that fail with a 5xx (0–1).
        #[arg(long, default_value_t = 0.05)]
        fault_rate: f64,
        /// Random seed (the same seed gives the same traffic).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Validate a configuration file and explain every problem; exit 1 when invalid.
    CheckConfig { file: PathBuf },
    /// List every metric family `/metrics` exports: name, type, labels and help.
    Metrics {
        /// As JSON (one object per family, with the series names a scrape shows).
        #[arg(long)]
        json: bool,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e}: expected for example \"30s\", \"5m\""))
}

/// `tracewarden metrics`: the family table, as text or JSON. A closed pipe (`| head`) ends the
/// listing quietly.
fn list_metrics(json: bool) {
    use std::io::Write;
    use tracewarden::telemetry::families;
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{:#}", families::to_json());
        return;
    }
    for family in families::ALL {
        let line =
            format!("{} {} {{{}}}\n    {}", family.name, family.kind.as_str(), family.labels.join(","), family.help);
        if writeln!(out, "{line}").is_err() {
            return;
        }
    }
}

/// `--encoding`: the name of any encoding the generator writes (listed in `--help`).
fn encoding_parser() -> impl clap::builder::TypedValueParser<Value = Encoding> {
    use clap::builder::TypedValueParser;
    let written = Encoding::ALL.iter().filter(|e| tracewarden::generate::writes(**e)).map(|e| e.as_str());
    clap::builder::PossibleValuesParser::new(written)
        .map(|name| Encoding::named(&name).expect("a possible value names an encoding"))
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = std::env::var("RUST_LOG").ok().unwrap_or_else(|| level.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Metrics { json } => {
            list_metrics(json);
            ExitCode::SUCCESS
        }
        Command::Run { config } => {
            let config = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            };
            init_logging(&config.log.level, config.log.format);
            exit(runtime().and_then(|rt| rt.block_on(run(config))))
        }
        Command::Demo {
            config,
            listen,
            duration,
            rate,
            canary_after,
            otlp_grpc_listen,
            otlp_http_listen,
            xray_listen,
        } => {
            let config = match config.map(|path| Config::load(Some(&path)).map(|c| (path, c))).transpose() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            };
            init_logging("info,librdkafka=warn,rdkafka=warn", LogFormat::Pretty);
            let options = tracewarden::demo::DemoOptions {
                listen,
                duration,
                rate,
                canary_after,
                partitions: 4,
                config,
                otlp_grpc_listen,
                otlp_http_listen,
                xray_listen,
            };
            exit(runtime().and_then(|rt| rt.block_on(async { Ok(tracewarden::demo::run(options).await?) })))
        }
        Command::Generate { brokers, config, topic, rate, duration, encoding, fault_rate, seed } => {
            init_logging("info", LogFormat::Pretty);
            let mut kafka = match config.as_deref().map(|file| Config::load(Some(file))) {
                None => KafkaConfig::default(),
                Some(Ok(config)) => config.kafka,
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            };
            match brokers {
                Some(brokers) => kafka.brokers = brokers,
                None if config.is_none() => {
                    eprintln!("error: --brokers or --config is needed");
                    return ExitCode::from(1);
                }
                None => {}
            }
            let settings = GenerateSettings {
                kafka,
                topic,
                rate,
                duration,
                encoding,
                profile: TrafficProfile { fault_rate, ..TrafficProfile::default() },
                seed,
            };
            exit(runtime().and_then(|rt| rt.block_on(generate(settings))))
        }
    }
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match Config::load(Some(file)) {
        Ok(config) => {
            println!("{}: valid", file.display());
            for warning in config.warnings() {
                println!("  warning: {warning}");
            }
            println!(
                "  consuming {} from {} as group {:?}; forwarding to {}",
                config.kafka.all_input_topics().join(", "),
                config.kafka.brokers,
                config.kafka.group_id,
                config.kafka.output_topic
            );
            println!("  sampling: {} rule(s), first match wins", config.sampling.rules.len());
            println!("  slo: {} objective(s)", config.slo.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::from(1)
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let receivers = tracewarden::ingest::bind(&config.ingest, tracewarden::ingest::BindHints::default()).await?;
    let clock = SystemClock::shared();
    let mut pipeline = tracewarden::pipeline::start(&config, clock).context("cannot start the pipeline")?;
    let stop_http = Arc::new(tokio::sync::Notify::new());
    let (bound, server) = {
        let stop = stop_http.clone();
        tracewarden::http::serve(&config.http, pipeline.handles.clone(), async move { stop.notified().await }).await?
    };
    pipeline.handles.group.set_url(&config.http.advertised(bound));
    let receivers = receivers
        .start(
            &config.ingest,
            &config.kafka,
            &pipeline.kafka_session,
            &pipeline.handles.telemetry.registry,
            stop_http.clone(),
        )
        .context("cannot start the receivers")?;
    tracing::info!(http = %bound, brokers = %config.kafka.brokers, topics = ?config.kafka.all_input_topics(), "tracewarden running");
    let shutdown = pipeline.shutdown_flag();
    let watcher = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tracewarden::shutdown_signal().await;
            tracing::info!("signal received: shutting down");
            shutdown.store(true, Ordering::SeqCst);
        })
    };
    let result = tokio::task::spawn_blocking(move || pipeline.join()).await.context("pipeline thread")?;
    watcher.abort();
    stop_http.notify_waiters();
    let _ = server.await;
    for task in receivers.tasks {
        let _ = task.await;
    }
    result.context("pipeline failed")?;
    Ok(())
}

async fn generate(settings: GenerateSettings) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(GenerateProgress::default());
    let switches = tracewarden::generate::Switches::new(true);
    let worker = {
        let (stop, progress) = (stop.clone(), progress.clone());
        tokio::task::spawn_blocking(move || tracewarden::generate::run(&settings, switches, stop, progress))
    };
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    let started = std::time::Instant::now();
    tokio::pin!(worker);
    loop {
        tokio::select! {
            result = &mut worker => {
                result.context("generator task")??;
                break;
            }
            _ = ticker.tick() => {
                let spans = progress.spans.load(Ordering::Relaxed);
                println!("{:>6.0}s  {} traces  {} spans  {} messages  ({:.0} spans/s)",
                    started.elapsed().as_secs_f64(), progress.traces.load(Ordering::Relaxed), spans,
                    progress.messages.load(Ordering::Relaxed), spans as f64 / started.elapsed().as_secs_f64().max(1e-9));
            }
            _ = tracewarden::shutdown_signal() => stop.store(true, Ordering::SeqCst),
        }
    }
    println!(
        "done: {} traces, {} spans",
        progress.traces.load(Ordering::Relaxed),
        progress.spans.load(Ordering::Relaxed)
    );
    Ok(())
}
