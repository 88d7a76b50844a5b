//! A `maillage serve` process for the network tests: started on loopback, its addresses read
//! from its stdout, killed when dropped; a minimal HTTP client for its API.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::maillage;

/// A running `maillage serve`, killed (SIGTERM first) when dropped.
pub struct Served {
    pub child: Child,
    /// Its first libp2p address (empty when it listens nowhere).
    pub address: String,
    /// Its HTTP API, `127.0.0.1:port`.
    pub http: String,
    /// The node's folder.
    pub dir: String,
}

impl Served {
    pub fn start(dir: &str) -> Served {
        Self::start_with(dir, &["--listen", "/ip4/127.0.0.1/tcp/0"])
    }

    /// Starts `maillage serve --dir DIR --http 127.0.0.1:0 EXTRA…` and waits until it listens.
    pub fn start_with(dir: &str, extra: &[&str]) -> Served {
        let mut child = maillage()
            .args(["serve", "--dir", dir, "--http", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut address = String::new();
        let mut http = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.is_none() {
            let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                break;
            };
            if let Some(addr) = line.strip_prefix("listening ") {
                if address.is_empty() {
                    address = addr.to_owned();
                }
            } else if let Some(addr) = line.strip_prefix("http http://") {
                http = Some(addr.to_owned());
            }
        }
        let Some(http) = http else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("maillage serve --dir {dir} did not print its addresses");
        };
        Served {
            child,
            address,
            http,
            dir: dir.to_owned(),
        }
    }

    /// `POST path` on the HTTP API with the daemon's token: status code and body.
    pub fn post(&self, path: &str) -> (u16, String) {
        let token = std::fs::read_to_string(std::path::Path::new(&self.dir).join("http.token"))
            .expect("the daemon's token");
        let header = format!("Authorization: Bearer {}\r\n", token.trim());
        http_with(&self.http, "POST", path, &header)
    }

    /// `GET path` on the HTTP API: status code and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http(&self.http, "GET", path)
    }

    /// `GET /status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        let (code, body) = self.get("/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status JSON")
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops with SIGTERM and returns whether it exited cleanly.
    pub fn stop(mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 client for the loopback API.
pub fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    http_with(addr, method, path, "")
}

/// The same, with extra header lines (each ending with CRLF).
pub fn http_with(addr: &str, method: &str, path: &str, headers: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the HTTP API");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// Polls `check` every 200 ms for up to `secs` seconds.
pub fn wait_until(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// A loopback TCP port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
