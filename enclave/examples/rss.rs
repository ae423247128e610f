//! Measures the enclave's resident memory as its log grows: starts `leadgate-enclave`
//! (release build), drives it directly over the wire protocol with accepted leads (each a new
//! email), and prints VmRSS at 10k and at 1M log entries (or the sizes given).
//!
//! Run: `cargo build --release --bins && cargo run --release -p leadgate-enclave --example rss [N1 N2]`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use leadgate_protocol::{decode, encode, Request, Response, MAX_BATCH};
use leadgate_verifier::intake::seal_lead;
use leadgate_verifier::keys::EnclaveKeys;

fn call(s: &mut TcpStream, req: &Request) -> Response {
    let body = encode(req);
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    decode(&buf).unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let marks = if args.is_empty() {
        vec![10_000, 1_000_000]
    } else {
        args
    };
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("leadgate-enclave");
    let dir = std::env::temp_dir().join(format!("leadgate-rss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = 29_000 + (std::process::id() % 1000) as u16;
    let mut child = Command::new(&bin)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--state-dir")
        .arg(&dir)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut s = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let Response::Booted { keys, .. } = call(
        &mut s,
        &Request::Boot {
            sealed_secrets: None,
            tip: None,
            aws_credentials: None,
        },
    ) else {
        panic!()
    };
    let keys = EnclaveKeys::from_attested(Some(&keys), None).unwrap();
    assert!(matches!(
        call(&mut s, &Request::Start),
        Response::Started { .. }
    ));
    println!("after start: {} KiB", rss_kib(child.id()));
    let seller = SigningKey::from_bytes(&[3u8; 32]);
    let (mut size, start) = (1u64, Instant::now());
    for mark in marks {
        while size < mark {
            let n = (mark - size).min(MAX_BATCH as u64);
            let leads = (0..n)
                .map(|k| {
                    let i = size + k;
                    let lead = serde_json::json!({
                        "business": "Rss Co", "full_name": "Sam Rss", "first": "Sam", "last": "Rss",
                        "email": format!("sam.rss.{i}@rssco{i}.com"), "role": "Owner", "website": format!("https://rssco{i}.com"),
                        "industry": "HVAC", "sub_industry": "Heating", "region": "Austin, TX", "linkedin": "https://linkedin.com/in/samrss"
                    });
                    seal_lead(&seller, &keys.intake_key, &keys.origin, &serde_json::to_vec(&lead).unwrap(), now_ms()).unwrap()
                })
                .collect();
            let Response::Submitted { results } = call(&mut s, &Request::Submit { leads }) else {
                panic!()
            };
            size += results.len() as u64;
        }
        let Response::Status(st) = call(&mut s, &Request::Status) else {
            panic!()
        };
        println!(
            "log entries {:>9}: VmRSS {:>7} KiB ({:.0}s)",
            st.size,
            rss_kib(child.id()),
            start.elapsed().as_secs_f64()
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
