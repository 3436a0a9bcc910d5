//! A TCP proxy that injects network faults between Kafka clients and a broker (tests/chaos.rs):
//! the broker advertises the proxy's address, so every connection of every client goes through
//! it. [`Fault::Cut`] closes every connection and refuses new ones, [`Fault::Stall`] stops moving
//! bytes (connections stay open, as behind a black-holing firewall), [`Fault::Slow`] moves them
//! in small chunks with a delay each, [`Fault::ThrottleProduce`] holds every Produce request
//! (Kafka API key 0) for a while and as long as its size takes at [`PRODUCE_BYTES_PER_SECOND`],
//! except those of the client named [`UNTHROTTLED_CLIENT_ID`] (the test's own input producer):
//! forwarding slows down whatever the producer's batching, input does not; [`Fault::None`] heals.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `client.id` whose Produce requests [`Fault::ThrottleProduce`] lets through.
pub const UNTHROTTLED_CLIENT_ID: &str = "chaos-input";

/// How long [`Fault::ThrottleProduce`] holds each Produce request at least.
pub const PRODUCE_DELAY: Duration = Duration::from_millis(300);

/// The bandwidth of one connection's Produce requests under [`Fault::ThrottleProduce`]: a
/// request is held as long as its size takes at this rate (a slow downstream), so a producer
/// that batches more per request does not escape the throttle.
pub const PRODUCE_BYTES_PER_SECOND: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None = 0,
    Cut = 1,
    Stall = 2,
    Slow = 3,
    ThrottleProduce = 4,
}

impl Fault {
    fn from_u8(value: u8) -> Fault {
        match value {
            1 => Fault::Cut,
            2 => Fault::Stall,
            3 => Fault::Slow,
            4 => Fault::ThrottleProduce,
            _ => Fault::None,
        }
    }
}

pub struct FaultProxy {
    pub addr: String,
    fault: Arc<AtomicU8>,
    /// Both ends of every open connection, to close them on a cut.
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl FaultProxy {
    /// Listens on `port` (127.0.0.1) and forwards to `upstream`.
    pub fn start(port: u16, upstream: String) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("proxy port");
        let addr = listener.local_addr().unwrap().to_string();
        let fault = Arc::new(AtomicU8::new(Fault::None as u8));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (accept_fault, accept_open) = (fault.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if Fault::from_u8(accept_fault.load(Ordering::SeqCst)) == Fault::Cut {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                {
                    let mut open = accept_open.lock().unwrap();
                    open.retain(|s| s.peer_addr().is_ok());
                    open.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                }
                let (requests, fault) =
                    ((client.try_clone().unwrap(), server.try_clone().unwrap()), accept_fault.clone());
                std::thread::spawn(move || pump_requests(requests.0, requests.1, &fault));
                let fault = accept_fault.clone();
                std::thread::spawn(move || pump(server, client, &fault));
            }
        });
        FaultProxy { addr, fault, open }
    }

    pub fn set(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
        if fault == Fault::Cut {
            for stream in self.open.lock().unwrap().drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Moves a client's requests to the broker, one size-prefixed Kafka frame at a time, under the
/// current fault, until either end closes.
fn pump_requests(mut from: TcpStream, mut to: TcpStream, fault: &AtomicU8) {
    let mut client_id: Option<String> = None;
    let mut frame = Vec::new();
    loop {
        while Fault::from_u8(fault.load(Ordering::SeqCst)) == Fault::Stall {
            // The injected stall: requests held while it lasts, the fault looked at every 20 ms.
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut size = [0u8; 4];
        if from.read_exact(&mut size).is_err() {
            break;
        }
        frame.resize(u32::from_be_bytes(size) as usize, 0);
        if from.read_exact(&mut frame).is_err() {
            break;
        }
        // Request header: api_key i16, api_version i16, correlation_id i32, client_id (i16 length).
        let api_key = frame.get(..2).map(|k| i16::from_be_bytes([k[0], k[1]]));
        if client_id.is_none() && frame.len() >= 10 {
            let length = i16::from_be_bytes([frame[8], frame[9]]).max(0) as usize;
            client_id = frame.get(10..10 + length).map(|id| String::from_utf8_lossy(id).into_owned());
        }
        match Fault::from_u8(fault.load(Ordering::SeqCst)) {
            // The injected slowness: each request held 20 ms.
            Fault::Slow => std::thread::sleep(Duration::from_millis(20)),
            Fault::ThrottleProduce if api_key == Some(0) && client_id.as_deref() != Some(UNTHROTTLED_CLIENT_ID) => {
                let transfer = Duration::from_secs_f64(frame.len() as f64 / PRODUCE_BYTES_PER_SECOND as f64);
                // The injected throttle: a slow link's latency and bandwidth for this produce request.
                std::thread::sleep(PRODUCE_DELAY + transfer)
            }
            _ => {}
        }
        if to.write_all(&size).and_then(|_| to.write_all(&frame)).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Moves bytes from `from` to `to` under the current fault, until either end closes.
fn pump(mut from: TcpStream, mut to: TcpStream, fault: &AtomicU8) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let limit = match Fault::from_u8(fault.load(Ordering::SeqCst)) {
            Fault::Stall => {
                // The injected stall: bytes held while it lasts, the fault looked at every 20 ms.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Fault::Slow => 512,
            Fault::None | Fault::Cut | Fault::ThrottleProduce => buffer.len(),
        };
        let n = match from.read(&mut buffer[..limit]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if Fault::from_u8(fault.load(Ordering::SeqCst)) == Fault::Slow {
            // The injected slowness: 512 bytes every 20 ms at most.
            std::thread::sleep(Duration::from_millis(20));
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
