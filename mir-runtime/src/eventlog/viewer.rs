//! The trace viewer: a self-contained HTML page drawing a recorded run as a space-time diagram.
//!
//! One lane per node; each event handed to a module is a point at its time; each message is an
//! arrow from the `SendMessage` that sent it to the `MessageReceived` that delivered it. The page
//! zooms (mouse wheel, or the +/− buttons), filters events by type or module (text box), and shows
//! an event's contents when it is clicked. It needs no network: data, script and style are inline.
//!
//! `mircat LOG… --html trace.html` writes one.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::eventlog::{observed, Entry};
use crate::stdevents::{MessageReceived, SendMessage};

#[derive(Serialize)]
struct Point {
    t: f64,
    node: usize,
    module: String,
    kind: String,
    text: String,
}

#[derive(Serialize)]
struct Data {
    nodes: Vec<String>,
    events: Vec<Point>,
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
        .map(|o| Point {
            t: o.time_ns as f64 / 1e6,
            node: lane(o.node.as_str()),
            module: o.module.to_string(),
            kind: o.event.name().to_owned(),
            text: format!(
                "node {} #{} at {:.3} ms, to {}\n{:?}",
                o.node,
                o.index,
                o.time_ns as f64 / 1e6,
                o.module,
                o.event
            ),
        })
        .collect();
    let data = serde_json::to_string(&Data { nodes, events, arrows })
        .expect("plain data")
        .replace("</", "<\\/");
    let title = title.replace('<', "&lt;");
    PAGE.replace("{{TITLE}}", &title).replace("{{DATA}}", &data)
}

const PAGE: &str = r##"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{TITLE}}</title>
<style>
body{font:13px system-ui,sans-serif;margin:0;display:flex;flex-direction:column;height:100vh}
header{padding:6px 10px;background:#f3f3f3;border-bottom:1px solid #ccc;display:flex;gap:8px;align-items:center}
#wrap{flex:1;overflow:auto}#info{height:9em;overflow:auto;white-space:pre-wrap;font-family:monospace;padding:6px 10px;border-top:1px solid #ccc;background:#fafafa}
.lane{stroke:#ddd}.ev{cursor:pointer}.ev.hidden,.arrow.hidden{display:none}.arrow{stroke:#4a7;stroke-width:1.2;marker-end:url(#head)}
</style></head><body>
<header><b>{{TITLE}}</b> <input id="filter" placeholder="filter: type or module"> <button id="zin">+</button><button id="zout">−</button> <span id="count"></span></header>
<div id="wrap"><svg id="svg" xmlns="http://www.w3.org/2000/svg"></svg></div>
<div id="info">click an event to see it</div>
<script>
window.onerror = function (m) { document.body.dataset.error = String(m); };
const data = {{DATA}};
const svg = document.getElementById('svg');
const NS = 'http://www.w3.org/2000/svg';
let scale = 1;
const tmax = Math.max(1e-3, ...data.events.map(e => e.t));
function el(name, attrs) { const e = document.createElementNS(NS, name); for (const k in attrs) e.setAttribute(k, attrs[k]); return e; }
function draw() {
  svg.innerHTML = '';
  const W = Math.max(800, 1200 * scale), left = 60, laneH = 60;
  svg.setAttribute('width', W + left + 20); svg.setAttribute('height', data.nodes.length * laneH + 40);
  const defs = el('defs', {}); const m = el('marker', {id: 'head', markerWidth: 8, markerHeight: 8, refX: 8, refY: 4, orient: 'auto'});
  m.appendChild(el('path', {d: 'M0,0 L8,4 L0,8 z', fill: '#4a7'})); defs.appendChild(m); svg.appendChild(defs);
  const x = t => left + (t / tmax) * W, y = n => 30 + n * laneH;
  data.nodes.forEach((n, i) => {
    svg.appendChild(el('line', {class: 'lane', x1: left, x2: left + W, y1: y(i), y2: y(i)}));
    const label = el('text', {x: 6, y: y(i) + 4}); label.textContent = 'node ' + n; svg.appendChild(label);
  });
  const f = document.getElementById('filter').value.trim();
  const shown = data.events.map(e => !f || e.kind.includes(f) || e.module.includes(f));
  // Events of one node at one time are spread a little so they stay clickable.
  const seen = {};
  const pos = data.events.map(e => { const k = e.node + '@' + e.t; const j = seen[k] = (seen[k] || 0) + 1; return [x(e.t) + (j - 1) * 3, y(e.node)]; });
  let arrows = 0;
  data.arrows.forEach(([a, b]) => {
    const line = el('line', {class: 'arrow' + (shown[a] && shown[b] ? '' : ' hidden'), x1: pos[a][0], y1: pos[a][1], x2: pos[b][0], y2: pos[b][1]});
    svg.appendChild(line); if (shown[a] && shown[b]) arrows++;
  });
  data.events.forEach((e, i) => {
    const c = el('circle', {class: 'ev' + (shown[i] ? '' : ' hidden'), cx: pos[i][0], cy: pos[i][1], r: 4, fill: e.kind.includes('Received') ? '#36c' : e.kind.includes('Send') ? '#c63' : '#888'});
    const tip = el('title', {}); tip.textContent = e.kind; c.appendChild(tip);
    c.addEventListener('click', () => { document.getElementById('info').textContent = e.text; });
    svg.appendChild(c);
  });
  document.getElementById('count').textContent = shown.filter(s => s).length + ' events, ' + arrows + ' messages';
  document.body.dataset.events = shown.filter(s => s).length;
  document.body.dataset.arrows = arrows;
}
document.getElementById('filter').addEventListener('input', draw);
document.getElementById('zin').addEventListener('click', () => { scale *= 1.5; draw(); });
document.getElementById('zout').addEventListener('click', () => { scale /= 1.5; draw(); });
document.getElementById('wrap').addEventListener('wheel', ev => { if (ev.ctrlKey) { ev.preventDefault(); scale *= ev.deltaY < 0 ? 1.2 : 1 / 1.2; draw(); } }, {passive: false});
draw();
document.body.dataset.rendered = 'yes';
</script></body></html>
"##;
