//! The trace viewer: a self-contained HTML page drawing a recorded run as a space-time diagram.
//!
//! One lane per node; each event handed to a module is a point at its time; each message is an
//! arrow, labelled with the message's type, from the `SendMessage` that sent it (a triangle) to
//! the `MessageReceived` that delivered it (a disc). A time axis with units runs along the top;
//! a legend gives each event or message type its colour and hides or shows it on a click. The
//! filter box takes space-separated terms: a term matches an event whose type contains it or
//! whose module starts with it (`ordering/3.` is every PBFT instance of ISS's epoch 3), and a
//! term starting with `-` hides what it matches. Zooming (the +/− buttons, or Ctrl + wheel, which
//! keeps the time under the pointer in place) keeps the view where it is. Clicking an event shows
//! its contents. The filter, zoom and position (`at`, the time in ms at the left edge) live in the
//! address, so a view can be shared: `trace.html#filter=ordering/3.&zoom=4&at=600`.
//! It needs no network: data, script and style are inline.
//!
//! `mircat LOG… --html trace.html` writes one.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::eventlog::{observed, Entry};
use crate::stdevents::{MessageReceived, SendMessage};

#[derive(Serialize)]
struct Point {
    /// Time in ms since the node's executor started.
    t: f64,
    node: usize,
    /// The module the event concerns: the handling module, or for a message, the module it is
    /// for (a submodule such as `ordering/3.1`, where the log names its factory), so that
    /// filtering by module keeps both ends of a message.
    module: String,
    /// The event's type; for a message sent or received, the message's.
    kind: String,
    /// 0: an event; 1: a message sent; 2: a message received.
    dir: u8,
    text: String,
}

#[derive(Serialize)]
struct Data {
    nodes: Vec<String>,
    events: Vec<Point>,
    /// (sending event, receiving event).
    arrows: Vec<(usize, usize)>,
}

/// The viewer page for `entries` (one or more nodes' logs).
pub fn render_html(entries: &[Entry], title: &str) -> String {
    let all = observed(entries);
    let mut nodes: Vec<String> = all.iter().map(|o| o.node.to_string()).collect();
    nodes.sort();
    nodes.dedup();
    let lane = |n: &str| nodes.iter().position(|x| x == n).expect("listed");
    // Sends, in order: (sender, receiver, message bytes) → event indices. Collected before
    // matching receives, because nodes' clocks differ (a receive may sort before its send).
    let mut sent: BTreeMap<(String, String, Vec<u8>), VecDeque<usize>> = BTreeMap::new();
    for (i, o) in all.iter().enumerate() {
        if let Ok(Some(s)) = o.event.payload.decode::<SendMessage>() {
            let bytes = crate::codec::encode(&s.message);
            for d in &s.destinations {
                sent.entry((o.node.to_string(), d.to_string(), bytes.clone()))
                    .or_default()
                    .push_back(i);
            }
        }
    }
    let mut arrows = Vec::new();
    for (i, o) in all.iter().enumerate() {
        if let Ok(Some(r)) = o.event.payload.decode::<MessageReceived>() {
            let key = (r.from.to_string(), o.node.to_string(), crate::codec::encode(&r.message));
            if let Some(from) = sent.get_mut(&key).and_then(|q| q.pop_front()) {
                arrows.push((from, i));
            }
        }
    }
    let events: Vec<Point> = all
        .iter()
        .map(|o| {
            let (module, kind, dir) = match (
                o.event.payload.decode::<SendMessage>(),
                o.event.payload.decode::<MessageReceived>(),
            ) {
                (Ok(Some(s)), _) => {
                    (s.message.dest_module.to_string(), s.message.payload.name().to_owned(), 1)
                }
                (_, Ok(Some(r))) => {
                    (r.message.dest_module.to_string(), r.message.payload.name().to_owned(), 2)
                }
                _ => (o.module.to_string(), o.event.name().to_owned(), 0),
            };
            Point {
                t: o.time_ns as f64 / 1e6,
                node: lane(o.node.as_str()),
                module,
                kind,
                dir,
                text: format!(
                    "node {} #{} at {:.3} ms, to {}\n{:?}",
                    o.node,
                    o.index,
                    o.time_ns as f64 / 1e6,
                    o.module,
                    o.event
                ),
            }
        })
        .collect();
    let data = serde_json::to_string(&Data { nodes, events, arrows })
        .expect("plain data")
        .replace("</", "<\\/");
    let title = title.replace('<', "&lt;");
    PAGE.replace("{{TITLE}}", &title).replace("{{DATA}}", &data)
}

const PAGE: &str = include_str!("viewer.html");
