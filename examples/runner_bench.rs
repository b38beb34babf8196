//! Task round trips through the sandbox's events platform, and the runner's memory.
//!
//! ```text
//! cargo run --release --example runner_bench -- [--sequential 2000] [--concurrent 20000] [--in-flight 64] [--warmup 200]
//! cargo run --release --example runner_bench -- --runner          # a plain runner (env vars)
//! cargo run --release --example runner_bench -- --external [--listen 127.0.0.1:8090]
//!     [--tls-cert C --tls-key K] [--runner-pid PID[,PID...]]
//! ```
//!
//! The workload is comparable across runners: interactive `product_custom_event_processing`
//! tasks whose handler answers at once with the payload it got (the handler is declared in
//! this file, so it exists only in this binary). The sandbox submits them in-process and
//! times each from submission to the recorded result: first one at a time, then with 64 in
//! flight. It prints round trips per second, p50/p99/max latency, and the runner process's
//! RSS when idle (connected, before any task) and loaded (the highest seen while 64 tasks
//! are in flight).
//!
//! By default the runner is this binary started again with `--runner` in a child process of
//! its own (so its RSS is its own), connected to the sandbox with the official runner's
//! environment variables. `--runner` alone is that plain runner, for any platform address.
//! `--external` starts only the sandbox and measures whatever runner connects to it (Connect's
//! Python runner with an echoing custom event handler, for example); give `--runner-pid` to
//! have its memory read (several processes are summed).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_eaas::registry::Registry;
use connect_eaas::runner::{HandlerError, Outcome, Runner, RunnerConfig, TaskContext};
use connect_sandbox::platform::TaskSpec;
use connect_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};
use tokio::task::JoinSet;

connect_eaas::event_handler! {
    event: "product_custom_event_processing",
    handler: echo,
}

/// Answers at once with what it got.
async fn echo(_ctx: TaskContext, data: Value) -> Result<Outcome, HandlerError> {
    Ok(Outcome::respond(200, None, Some(data)))
}

type Failure = Box<dyn std::error::Error>;

fn args() -> Vec<String> {
    std::env::args().collect()
}

fn arg(name: &str) -> Option<String> {
    let args = args();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn flag(name: &str) -> bool {
    args().iter().any(|a| a == name)
}

/// `VmRSS` (or `VmHWM`) of the processes, summed, in MiB.
fn rss_mb(pids: &[u32], field: &str) -> Option<f64> {
    let mut total = 0.0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb: f64 = status
            .lines()
            .find(|l| l.starts_with(field))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        total += kb / 1024.0;
    }
    Some(total)
}

fn show_mb(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.1} MiB"))
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    if flag("--runner") {
        return plain_runner().await;
    }
    let sequential: usize = arg("--sequential").map_or(Ok(2000), |v| v.parse())?;
    let concurrent: usize = arg("--concurrent").map_or(Ok(20_000), |v| v.parse())?;
    let in_flight: usize = arg("--in-flight").map_or(Ok(64), |v| v.parse())?;
    let warmup: usize = arg("--warmup").map_or(Ok(200), |v| v.parse())?;
    let external = flag("--external");
    let listen = arg("--listen").unwrap_or_else(|| {
        if external {
            "127.0.0.1:8090".into()
        } else {
            "127.0.0.1:0".into()
        }
    });
    let tls = match (arg("--tls-cert"), arg("--tls-key")) {
        (Some(cert), Some(key)) => Some(connect_sandbox::tls::TlsFiles {
            cert: cert.into(),
            key: key.into(),
        }),
        _ => None,
    };
    let sb = Sandbox::start(SandboxConfig {
        listen: listen.parse()?,
        tls,
        ..SandboxConfig::default()
    })
    .await?;
    let ext = sb.state().dataset().extension();
    let key = sb
        .key(&ext.api_key)
        .ok_or("the dataset has no extension key")?;

    let mut child = None;
    let mut pids: Vec<u32> = arg("--runner-pid")
        .map(|p| p.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_default();
    if external {
        println!("sandbox listening; connect a runner with:");
        println!(
            "  API_KEY=\"ApiKey {}\" ENVIRONMENT_ID={} SERVER_ADDRESS={} INSTANCE_ID=bench",
            key.expose(),
            ext.environment.id,
            sb.addr()
        );
    } else {
        let exe = std::env::current_exe()?;
        let c = tokio::process::Command::new(exe)
            .arg("--runner")
            .env("API_KEY", format!("ApiKey {}", key.expose()))
            .env("ENVIRONMENT_ID", &ext.environment.id)
            .env("SERVER_ADDRESS", sb.ws_origin())
            .env("INSTANCE_ID", "bench")
            .env("TASK_CONCURRENCY", in_flight.max(1).to_string())
            .env_remove("API_ADDRESS")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        pids.push(c.id().ok_or("the runner has no pid")?);
        child = Some(c);
    }

    // Both sessions connected and set up (an interactive one at least, for an external runner).
    let platform = sb.state().platform();
    let deadline = Instant::now() + Duration::from_secs(if external { 600 } else { 30 });
    loop {
        let p = platform.dump();
        let ready = p["connections"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["setup_done"] == true && c["runner_type"] == "interactive")
                && (external || c.len() == 2)
        });
        if ready {
            break;
        }
        if Instant::now() > deadline {
            return Err("no runner connected".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_mb(&pids, "VmRSS:");

    let submit = |i: usize| {
        let spec = TaskSpec {
            category: "interactive".into(),
            event_type: "product_custom_event_processing".into(),
            object_id: "PR-391-274-001-0001".into(),
            data: Some(json!({"n": i, "note": "benchmark"})),
            ..TaskSpec::default()
        };
        platform.submit(spec)
    };
    // Warm up: connections, allocator, caches.
    for i in 0..warmup {
        let (_, done) = submit(i)?;
        done.await?;
    }

    let mut lat = Vec::with_capacity(sequential);
    let started = Instant::now();
    for i in 0..sequential {
        let t = Instant::now();
        let (_, done) = submit(i)?;
        let task = done.await?;
        lat.push(t.elapsed());
        if task["status"] != "succeeded" {
            return Err(format!("task failed: {task}").into());
        }
    }
    report("one at a time", sequential, started.elapsed(), &mut lat);

    let state = sb.state().clone();
    let sampler_pids = pids.clone();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak: Option<f64> = None;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(v) = rss_mb(&sampler_pids, "VmRSS:") {
                    peak = Some(peak.map_or(v, |p: f64| p.max(v)));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let mut lat = Vec::with_capacity(concurrent);
    let started = Instant::now();
    let mut running = JoinSet::new();
    let mut next = 0;
    let mut failed = 0usize;
    while next < concurrent || !running.is_empty() {
        while next < concurrent && running.len() < in_flight {
            let (_, done) = state.platform().submit(TaskSpec {
                category: "interactive".into(),
                event_type: "product_custom_event_processing".into(),
                object_id: "PR-391-274-001-0001".into(),
                data: Some(json!({"n": next, "note": "benchmark"})),
                ..TaskSpec::default()
            })?;
            let t = Instant::now();
            running.spawn(async move {
                let task = done.await;
                (
                    t.elapsed(),
                    task.map(|t| t["status"] == "succeeded").unwrap_or(false),
                )
            });
            next += 1;
        }
        if let Some(Ok((d, ok))) = running.join_next().await {
            lat.push(d);
            if !ok {
                failed += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let loaded = sampler.await.ok().flatten();
    report(
        &format!("{in_flight} in flight"),
        concurrent,
        elapsed,
        &mut lat,
    );
    if failed > 0 {
        return Err(format!("{failed} tasks did not succeed").into());
    }
    println!(
        "runner RSS: idle {}, loaded {} (highest seen with {in_flight} in flight), peak {}",
        show_mb(idle),
        show_mb(loaded),
        show_mb(rss_mb(&pids, "VmHWM:"))
    );
    let errors = platform.dump()["protocol_errors"].clone();
    println!("protocol errors: {}", errors.as_array().map_or(0, Vec::len));

    if let Some(mut c) = child {
        if let Some(pid) = c.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
    }
    sb.shutdown().await;
    Ok(())
}

fn report(phase: &str, n: usize, elapsed: Duration, lat: &mut [Duration]) {
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat[i].as_secs_f64() * 1000.0
    };
    println!(
        "{phase:>14}: {n} tasks in {:.2} s = {:.0} round trips/s; latency p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}

/// The runner with this binary's handlers, configured by the official environment variables,
/// until SIGTERM or Ctrl-C.
async fn plain_runner() -> Result<(), Failure> {
    let config = RunnerConfig::from_env()?;
    let registry = Registry::collect()?;
    let runner = Runner::new(
        config,
        registry,
        &connect_usage::builtin_descriptor()?,
        None,
    )?
    .with_state(connect_usage::usage::locks::GroupLocks::default())
    .start();
    tokio::select! {
        _ = connect_usage::signal::wait_for_signal() => runner.stop(),
        _ = runner.stop_requested() => {}
    }
    let report = runner.wait().await;
    if !report.undelivered.is_empty() {
        return Err(format!("undelivered results: {:?}", report.undelivered).into());
    }
    Ok(())
}
