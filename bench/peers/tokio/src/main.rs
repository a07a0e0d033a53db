//! tokio-peer: the tokio side of corio's peer benchmarks (issue 7).
//!
//! ```text
//! tokio-peer echo PORT        TCP echo server on 127.0.0.1:PORT (0: the kernel picks the port)
//! tokio-peer http PORT        HTTP/1.1 "hello" server on 127.0.0.1:PORT
//! tokio-peer micro [--quick]  micro benchmarks, one JSON object per line on stdout
//! ```
//!
//! Everything runs on tokio's single-threaded runtime (`Builder::new_current_thread()`), the
//! counterpart of one asyncio loop or one corio `EventLoop`.
//!
//! Micro benchmarks, as defined in bench/README.md ("What is measured"): `suspended_task_bytes`
//! (run first), `spawn_join`, `ping_pong`, `timers_1m` and `timers_1m_total`. Each runs in a
//! fresh runtime, inside a task spawned with `tokio::spawn` (see `run_bench` for why not in
//! `block_on` itself). The other benchmarks of the README are not part of this peer.
//!
//! tokio has no callback timer (nothing like `call_later`): `timers_1m` arms its timers as tasks
//! that each await a `tokio::time::sleep_until`, which is how a tokio program waits for a
//! deadline.

use std::future::Future;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Runtime;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

/// The name this peer reports in its JSON records.
const PEER: &str = "tokio";

/// Listen backlog of the servers, as in the other peers.
const BACKLOG: u32 = 1024;

/// Largest read of the echo server.
const ECHO_CHUNK: usize = 64 * 1024;

/// Free space guaranteed in the HTTP server's request buffer before each read.
const HTTP_READ: usize = 16 * 1024;

/// A request whose header section grows beyond this without "\r\n\r\n" closes its connection.
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// The answer to every HTTP request.
const HTTP_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, World!\n";

const USAGE: &str =
    "usage: tokio-peer echo PORT | http PORT | micro [--quick]   (PORT 0 picks a free port)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["echo" | "http", port] => match port.parse::<u16>() {
            Ok(port) if args[0] == "echo" => serve(port, echo_connection),
            Ok(port) => serve(port, http_connection),
            Err(_) => {
                eprintln!("tokio-peer: bad port '{port}' (expected 0 to 65535)\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        ["micro"] => micro(false),
        ["micro", "--quick"] => micro(true),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tokio-peer: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A fresh single-threaded runtime with I/O and timers.
fn new_runtime() -> Result<Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))
}

// ===== Servers =====

/// Runs a server on 127.0.0.1:`port` whose connections are served by `handler`, until SIGTERM or
/// SIGINT.
fn serve<H, F>(port: u16, handler: H) -> Result<(), String>
where
    H: Fn(TcpStream) -> F + Send + 'static,
    F: Future<Output = io::Result<()>> + Send + 'static,
{
    raise_nofile_limit()?;
    let runtime = new_runtime()?;
    runtime.block_on(async move {
        // The handlers go in before the port is printed: a caller may signal as soon as it has
        // read the port.
        let mut sigterm =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let mut sigint =
            signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
        let listener = listen(port)?;
        let address = listener
            .local_addr()
            .map_err(|e| format!("getsockname on the listening socket: {e}"))?;
        print_line(&address.port().to_string())?;

        // The accept loop is a task of its own rather than a branch of the select! below: a
        // wake-up of the `block_on` future goes through the driver's unpark (an eventfd write),
        // which a task's wake-up does not pay.
        let server = tokio::spawn(accept_loop(listener, handler));
        tokio::select! {
            _ = sigterm.recv() => Ok(()),
            _ = sigint.recv() => Ok(()),
            result = server => result.unwrap_or_else(|e| Err(format!("the accept loop failed: {e}"))),
        }
    })
    // Dropping the runtime drops the connections' tasks, which closes their sockets.
}

/// Raises the soft limit on open descriptors to the hard limit, so that the servers can hold as
/// many connections as the system allows (100 000 idle ones in the benchmarks).
fn raise_nofile_limit() -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes a `struct rlimit` into the one we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!(
            "getrlimit(RLIMIT_NOFILE): {}",
            io::Error::last_os_error()
        ));
    }
    if limit.rlim_cur == limit.rlim_max {
        return Ok(());
    }
    if limit.rlim_max == libc::RLIM_INFINITY {
        // Linux refuses a descriptor limit above fs.nr_open, "unlimited" included.
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .map_err(|e| format!("cannot read /proc/sys/fs/nr_open: {e}"))?;
        limit.rlim_max = nr_open
            .trim()
            .parse()
            .map_err(|_| format!("unexpected /proc/sys/fs/nr_open: {nr_open:?}"))?;
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit only reads the `struct rlimit` we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(format!(
            "setrlimit(RLIMIT_NOFILE, {}): {}",
            limit.rlim_cur,
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// A listening socket on 127.0.0.1:`port`.
fn listen(port: u16) -> Result<TcpListener, String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let socket = TcpSocket::new_v4().map_err(|e| format!("cannot create a TCP socket: {e}"))?;
    // A fixed port can be reused at once while connections of a previous run are in TIME_WAIT.
    socket
        .set_reuseaddr(true)
        .map_err(|e| format!("setsockopt(SO_REUSEADDR): {e}"))?;
    socket
        .bind(address)
        .map_err(|e| format!("cannot bind {address}: {e}"))?;
    socket
        .listen(BACKLOG)
        .map_err(|e| format!("cannot listen on {address}: {e}"))
}

/// Prints `line` on stdout and flushes it, for the process that reads it through a pipe.
fn print_line(line: &str) -> Result<(), String> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

/// Accepts connections forever, serving each one in a task of its own.
async fn accept_loop<H, F>(listener: TcpListener, handler: H) -> Result<(), String>
where
    H: Fn(TcpStream) -> F,
    F: Future<Output = io::Result<()>> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                // The task is detached: it ends with its connection.
                drop(tokio::spawn(run_connection(handler(stream))));
            }
            Err(e) if is_aborted_connection(&e) => {}
            Err(e) if is_out_of_resources(&e) => {
                // The pending connection stays in the backlog; retrying at once would spin.
                eprintln!("tokio-peer: accept: {e} (retrying in 100 ms)");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
}

/// Errors of accept(2) that concern one pending connection only (see its manual page).
fn is_aborted_connection(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    ) || e.kind() == io::ErrorKind::Interrupted
}

/// Errors of accept(2) that say the process or the system is out of descriptors or memory.
fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Runs one connection to its end. A peer that goes away abruptly is part of a server's life;
/// any other error is reported, and in every case it closes this connection only.
async fn run_connection(connection: impl Future<Output = io::Result<()>>) {
    if let Err(e) = connection.await {
        let peer_went_away = matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::TimedOut
        );
        if !peer_went_away {
            eprintln!("tokio-peer: connection closed on error: {e}");
        }
    }
}

/// Echo: read up to 64 KiB, write all of it back, repeat until end of stream. `write_all`
/// completes before the next read, so a client that does not read stops being read.
async fn echo_connection(mut stream: TcpStream) -> io::Result<()> {
    // Small echoes must not wait for the ACK of the previous one (Nagle's algorithm).
    stream.set_nodelay(true)?;
    // The buffer is allocated when the first bytes (or the end of stream) arrive, so that an
    // idle connection costs no 64 KiB: the servers must hold 100 000 of them. `read_buf` fills
    // its spare capacity without zeroing it first, so only the pages that data reaches become
    // resident (`vec![0; 64 KiB]` and `read` would touch all 16 of them).
    stream.readable().await?;
    let mut buffer = Vec::with_capacity(ECHO_CHUNK);
    loop {
        buffer.clear();
        if stream.read_buf(&mut buffer).await? == 0 {
            return Ok(());
        }
        stream.write_all(&buffer).await?;
    }
}

/// HTTP/1.1 keep-alive: every request (everything up to and including the first "\r\n\r\n";
/// GET without a body) is answered with `HTTP_RESPONSE`, in order. The answers to the requests
/// found in one read (pipelining) go out in one write, before the next read.
async fn http_connection(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    // As in `echo_connection`: no buffer for an idle connection.
    stream.readable().await?;
    // Bytes received and not yet answered: the start of the next request, if any.
    let mut pending: Vec<u8> = Vec::with_capacity(HTTP_READ);
    let mut responses: Vec<u8> = Vec::new();
    // Where the search for "\r\n\r\n" resumes in `pending`: the bytes before it were searched.
    let mut search_from = 0;
    loop {
        pending.reserve(HTTP_READ);
        if stream.read_buf(&mut pending).await? == 0 {
            return Ok(());
        }
        let mut answered = 0; // bytes of `pending` that belong to answered requests
        while let Some(at) = find_header_end(&pending[search_from..]) {
            answered = search_from + at;
            search_from = answered;
            responses.extend_from_slice(HTTP_RESPONSE);
        }
        pending.drain(..answered);
        // The last 3 bytes may be the start of a "\r\n\r\n" that the next read completes.
        search_from = pending.len().saturating_sub(3);
        if !responses.is_empty() {
            stream.write_all(&responses).await?;
            responses.clear();
        }
        if pending.len() > MAX_HEADER_BYTES {
            return Ok(()); // a header section that large is not a request we serve: close
        }
    }
}

/// The length of the header section at the start of `bytes` (up to and including the first
/// "\r\n\r\n"), if it is complete.
fn find_header_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|start| start + 4)
}

// ===== Micro benchmarks =====

/// The records of one benchmark: (bench, value, unit).
type Records = Vec<(&'static str, f64, &'static str)>;

fn micro(quick: bool) -> Result<(), String> {
    let n = |full: usize, small: usize| if quick { small } else { full };
    // First, so that memory freed by the other benchmarks cannot absorb the tasks' growth.
    run_bench(suspended_task_bytes(n(100_000, 20_000)))?;
    run_bench(spawn_join(n(1_000_000, 100_000)))?;
    run_bench(ping_pong(n(1_000_000, 100_000)))?;
    run_bench(timers_1m(n(1_000_000, 100_000)))?;
    Ok(())
}

/// Runs `bench` in a fresh runtime and prints its records.
///
/// The benchmark runs in a spawned task, not in `block_on`'s future: on the current-thread
/// runtime, waking the `block_on` future unparks the driver (an eventfd write, then an
/// `epoll_wait` that returns at once), while waking a task only queues it. `spawn_join` measured
/// in `block_on` would be dominated by those two system calls per join.
fn run_bench<F>(bench: F) -> Result<(), String>
where
    F: Future<Output = Result<Records, String>> + Send + 'static,
{
    let runtime = new_runtime()?;
    let task = runtime.spawn(bench);
    let records = runtime
        .block_on(task)
        .map_err(|e| format!("a benchmark task failed: {e}"))??;
    for (bench, value, unit) in records {
        print_line(&format!(
            r#"{{"peer": "{PEER}", "bench": "{bench}", "value": {value}, "unit": "{unit}"}}"#
        ))?;
    }
    Ok(())
}

/// Nanoseconds per operation over `ops` operations since `start`.
fn ns_per_op(start: Instant, ops: usize) -> f64 {
    start.elapsed().as_nanos() as f64 / ops as f64
}

/// `spawn_join`: N times `tokio::spawn(async { 1 }).await`, sequentially, inside one task.
/// `tokio::spawn` rather than `spawn_local` in a `LocalSet`: it is what a tokio program writes on
/// a current-thread runtime (and a `LocalSet` adds its own queue in front of the runtime's).
async fn spawn_join(n: usize) -> Result<Records, String> {
    let start = Instant::now();
    let mut sum = 0;
    for _ in 0..n {
        sum += tokio::spawn(async { 1 })
            .await
            .map_err(|e| format!("spawn_join: a task failed: {e}"))?;
    }
    let ns = ns_per_op(start, n);
    if sum != n {
        return Err(format!(
            "spawn_join: the tasks returned {sum} in all, not {n}"
        ));
    }
    Ok(vec![("spawn_join", ns, "ns/op")])
}

/// `ping_pong`: tasks A and B hand control back and forth N round trips; total time / 2N.
///
/// Each waits on a `tokio::sync::Notify` of its own, tokio's cheapest one-shot wake-up:
/// `notify_one` wakes the waiter (or leaves a permit that the next `notified()` consumes at
/// once), and nothing is allocated per hand-off. The literal form of the README, a fresh
/// `tokio::sync::oneshot` channel per hand-off (A resolves B's future and awaits a new one of
/// its own), allocates a channel each time and measured about 30 % more CPU per hand-off here
/// (about 97 ns against 75 ns).
async fn ping_pong(n: usize) -> Result<Records, String> {
    let a_wakes = Arc::new(Notify::new());
    let b_wakes = Arc::new(Notify::new());

    let b = {
        let (a_wakes, b_wakes) = (Arc::clone(&a_wakes), Arc::clone(&b_wakes));
        async move {
            for _ in 0..n {
                b_wakes.notified().await;
                a_wakes.notify_one(); // hand off to A
            }
        }
    };
    let a = async move {
        for _ in 0..n {
            b_wakes.notify_one(); // hand off to B
            a_wakes.notified().await;
        }
    };

    let start = Instant::now();
    let b = tokio::spawn(b); // B starts first and waits for A
    let a = tokio::spawn(a);
    let joined = (b.await, a.await);
    let ns = ns_per_op(start, 2 * n);
    for result in [joined.0, joined.1] {
        result.map_err(|e| format!("ping_pong: a task failed: {e}"))?;
    }
    Ok(vec![("ping_pong", ns, "ns/op")])
}

/// Counts tasks down to zero; the last one wakes whoever awaits `all_done`.
struct Countdown {
    remaining: AtomicUsize,
    all_done: Notify,
}

impl Countdown {
    fn new(n: usize) -> Self {
        Countdown {
            remaining: AtomicUsize::new(n),
            all_done: Notify::new(),
        }
    }

    fn count_one(&self) {
        // Relaxed: one thread runs all the tasks; the count needs no ordering of its own.
        if self.remaining.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.all_done.notify_one(); // stores a permit if nobody waits yet
        }
    }
}

/// `timers_1m` and `timers_1m_total`: N tasks, the i-th sleeping (i % 1000) ms, then counting
/// down. Wall time from before the first spawn until the last task has counted: the total, and
/// the total minus the longest delay (0.999 s).
///
/// Each deadline is taken in the spawning loop, as `call_later` takes its own when called, and
/// the task awaits `sleep_until(deadline)`: its timer is armed when the task first runs. A
/// `sleep(delay)` created in the loop and moved into the task would do the same but double the
/// task (a `Sleep` is 640 bytes, and the task's state machine holds both the captured one and
/// the one being awaited); `sleep(delay)` created in the task would count the delay from the
/// task's first poll instead. tokio's timer wheel has a resolution of 1 ms.
async fn timers_1m(n: usize) -> Result<Records, String> {
    let countdown = Arc::new(Countdown::new(n));
    let start = Instant::now();
    for i in 0..n {
        let deadline = tokio::time::Instant::now() + Duration::from_millis((i % 1000) as u64);
        let countdown = Arc::clone(&countdown);
        drop(tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            countdown.count_one();
        }));
    }
    countdown.all_done.notified().await;
    let total = start.elapsed().as_secs_f64();
    Ok(vec![
        ("timers_1m", total - 0.999, "s"),
        ("timers_1m_total", total, "s"),
    ])
}

/// The resident set size of this process, in bytes.
fn rss_bytes() -> Result<usize, String> {
    let statm = std::fs::read_to_string("/proc/self/statm")
        .map_err(|e| format!("cannot read /proc/self/statm: {e}"))?;
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| format!("unexpected /proc/self/statm: {statm:?}"))?;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page_size <= 0 {
        return Err(format!(
            "sysconf(_SC_PAGESIZE): {}",
            io::Error::last_os_error()
        ));
    }
    Ok(pages * page_size as usize)
}

/// The state shared by the tasks of `suspended_task_bytes`.
struct Suspended {
    n: usize,
    /// What every task waits on.
    event: Notify,
    /// Tasks that have started; the last to start wakes the benchmark through `all_started`.
    started: AtomicUsize,
    all_started: Notify,
    finished: Countdown,
}

/// `suspended_task_bytes`: growth of the resident set after N tasks have started and suspended
/// on one shared `Notify` (`notified().await`), / N. Then `notify_waiters` wakes them all and
/// they count down. Task handles are not kept: each task counts itself (as corio's benchmark
/// does), so no vector of handles is measured.
async fn suspended_task_bytes(n: usize) -> Result<Records, String> {
    let shared = Arc::new(Suspended {
        n,
        event: Notify::new(),
        started: AtomicUsize::new(0),
        all_started: Notify::new(),
        finished: Countdown::new(n),
    });
    // Return the memory freed so far to the system, as corio's benchmark does, so that the
    // tasks' allocations show as growth of the resident set.
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
    let before = rss_bytes()?;
    for _ in 0..n {
        let shared = Arc::clone(&shared);
        drop(tokio::spawn(async move {
            // Registered before counting: `notify_waiters` wakes the `Notified` futures created
            // before it is called, polled or not.
            let woken = shared.event.notified();
            if shared.started.fetch_add(1, Ordering::Relaxed) + 1 == shared.n {
                // The benchmark runs again only after this poll, once this task has suspended too.
                shared.all_started.notify_one();
            }
            woken.await;
            shared.finished.count_one();
        }));
    }
    shared.all_started.notified().await;
    let after = rss_bytes()?;
    shared.event.notify_waiters();
    shared.finished.all_done.notified().await;
    let growth = after as f64 - before as f64;
    Ok(vec![(
        "suspended_task_bytes",
        growth / n as f64,
        "bytes/task",
    )])
}
