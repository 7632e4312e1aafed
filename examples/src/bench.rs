//! The benchmark harness's parts that do not need processes (`src/bin/bench.rs` runs them): the
//! load clients' wire format, the measurements nodes and clients report, the summary in the form
//! of the HotStuff and Narwhal benchmark scripts, the sweep's CSV and its plot.
//!
//! **What is measured** (`docs/benchmarks.md`, "The benchmark harness"):
//!
//! * A load client sends a fixed rate in bursts, [`BURSTS_PER_SECOND`] per second, each burst to
//!   every node (ISS's clients send every request to all nodes: the leader of its bucket proposes
//!   it). The first transaction of each burst is a *sample*: its payload starts with byte 0 (the
//!   others with 1), and the client notes when it sent it.
//! * A node notes when a sample entered its mempool (taken from a client) and when it delivered
//!   it, and counts every transaction it delivered.
//! * **Consensus** latency is from a sample's entry into a node's mempool to that node's delivery
//!   of it (batching, certification, ordering: the protocol's part); consensus TPS counts
//!   transactions delivered from the first entry into a mempool to the last delivery.
//! * **End-to-end** latency is from the client's sending of a sample to a node's delivery of it;
//!   end-to-end TPS counts transactions delivered from the first client's start to the last
//!   delivery. As the HotStuff and Narwhal parsers do, transactions still in flight when the run
//!   stops are not counted.
//! * Every (node, sample) pair counts once in the latencies; the transactions delivered are the
//!   median over the nodes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use protocols::availability::Tx;

/// Bursts a load client sends per second (HotStuff's and Narwhal's clients: 20).
pub const BURSTS_PER_SECOND: u64 = 20;

/// The largest frame a node takes from a load client.
pub const MAX_FRAME: usize = 16 << 20;

/// The first payload byte of a sample transaction.
pub const SAMPLE: u8 = 0;
/// The first payload byte of every other transaction.
pub const NOT_SAMPLE: u8 = 1;

/// One burst of a load client: `count` transactions of `tx_size` bytes numbered from `first`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    /// The client's ID.
    pub client: String,
    /// The number of the first transaction.
    pub first: u64,
    /// The payloads, `tx_size` bytes each, back to back.
    pub payload: Vec<u8>,
    /// Bytes per transaction.
    pub tx_size: usize,
}

impl Burst {
    /// The burst of `count` transactions of `tx_size` bytes (at least 1) from number `first`;
    /// the first is a sample.
    pub fn new(client: &str, first: u64, count: usize, tx_size: usize) -> Self {
        let tx_size = tx_size.max(1);
        let mut payload = vec![b'.'; count * tx_size];
        for (i, tx) in payload.chunks_mut(tx_size).enumerate() {
            tx[0] = if i == 0 { SAMPLE } else { NOT_SAMPLE };
        }
        Burst { client: client.to_owned(), first, payload, tx_size }
    }

    /// The burst that sends transactions `first..first + count` again: the same payloads as
    /// when they were first sent (the first of each of the client's bursts, `is_sample`, was a
    /// sample), so a node that took the first sending holds the very same transactions.
    pub fn resend(
        client: &str,
        first: u64,
        count: usize,
        tx_size: usize,
        is_sample: impl Fn(u64) -> bool,
    ) -> Self {
        let mut b = Burst::new(client, first, count, tx_size);
        for (i, tx) in b.payload.chunks_mut(b.tx_size).enumerate() {
            tx[0] = if is_sample(first + i as u64) { SAMPLE } else { NOT_SAMPLE };
        }
        b
    }

    /// How many transactions.
    pub fn count(&self) -> usize {
        self.payload.len() / self.tx_size
    }

    /// The frame on the wire: a 4-byte little-endian length, then version 1, the client ID
    /// (2-byte length), the first number (8 bytes), the count and the size (4 bytes each), the
    /// payloads.
    pub fn encode(&self) -> Vec<u8> {
        let body = 1 + 2 + self.client.len() + 8 + 4 + 4 + self.payload.len();
        let mut out = Vec::with_capacity(4 + body);
        out.extend_from_slice(&(body as u32).to_le_bytes());
        out.push(1);
        out.extend_from_slice(&(self.client.len() as u16).to_le_bytes());
        out.extend_from_slice(self.client.as_bytes());
        out.extend_from_slice(&self.first.to_le_bytes());
        out.extend_from_slice(&(self.count() as u32).to_le_bytes());
        out.extend_from_slice(&(self.tx_size as u32).to_le_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Decodes a frame's body (after its length); an error names what is wrong.
    pub fn decode(body: &[u8]) -> Result<Burst, String> {
        let (client, first, tx_size, payload) = Self::parse(body)?;
        Ok(Burst { client, first, payload: payload.to_vec(), tx_size })
    }

    /// A frame's body as its client, transactions and the numbers of its samples (the
    /// payloads copied once, into the transactions).
    pub fn decode_txs(body: &[u8]) -> Result<(String, Vec<Tx>, Vec<u64>), String> {
        let (client, first, tx_size, payload) = Self::parse(body)?;
        let mut samples = Vec::new();
        let txs = payload
            .chunks(tx_size)
            .enumerate()
            .map(|(i, data)| {
                let n = first + i as u64;
                if data[0] == SAMPLE {
                    samples.push(n);
                }
                Tx::new(client.as_str(), n, data)
            })
            .collect();
        Ok((client, txs, samples))
    }

    /// (client, first number, size, payloads) of a frame's body.
    fn parse(body: &[u8]) -> Result<(String, u64, usize, &[u8]), String> {
        let mut r = body;
        let mut take = |n: usize, what: &str| -> Result<&[u8], String> {
            if r.len() < n {
                return Err(format!("frame ends inside its {what}"));
            }
            let (a, b) = r.split_at(n);
            r = b;
            Ok(a)
        };
        if take(1, "version")?[0] != 1 {
            return Err("unknown frame version".into());
        }
        let len = u16::from_le_bytes(take(2, "client ID length")?.try_into().expect("2")) as usize;
        let client = std::str::from_utf8(take(len, "client ID")?)
            .map_err(|_| "client ID is not UTF-8".to_string())?
            .to_owned();
        // The ID goes into the node's line-based report: letters, digits, `-`, `_`, `.`, `:`.
        if client.is_empty()
            || !client.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err("a client ID must be letters, digits, '-', '_', '.' or ':'".into());
        }
        let first = u64::from_le_bytes(take(8, "first number")?.try_into().expect("8"));
        let count = u32::from_le_bytes(take(4, "count")?.try_into().expect("4")) as usize;
        let tx_size = u32::from_le_bytes(take(4, "size")?.try_into().expect("4")) as usize;
        if tx_size == 0 {
            return Err("transactions of 0 bytes".into());
        }
        if count.checked_mul(tx_size) != Some(r.len()) {
            return Err(format!(
                "{count} transactions of {tx_size} bytes announced, {} bytes given",
                r.len()
            ));
        }
        if first.checked_add(count as u64).is_none() {
            return Err("transaction numbers overflow".into());
        }
        Ok((client, first, tx_size, r))
    }

    /// The transactions, and the numbers of the samples among them.
    pub fn into_txs(self) -> (Vec<Tx>, Vec<u64>) {
        let mut samples = Vec::new();
        let txs = self
            .payload
            .chunks(self.tx_size)
            .enumerate()
            .map(|(i, data)| {
                let n = self.first + i as u64;
                if data[0] == SAMPLE {
                    samples.push(n);
                }
                Tx::new(self.client.as_str(), n, data)
            })
            .collect();
        (txs, samples)
    }
}

/// What a node tells a load client on its connection: the numbers of its transactions the
/// mempool refused for now (full, or outside the client's window), which the client sends
/// again. A frame is a 4-byte little-endian count, then that many 8-byte numbers.
pub fn encode_refused(numbers: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 8 * numbers.len());
    out.extend_from_slice(&(numbers.len() as u32).to_le_bytes());
    for n in numbers {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out
}

/// Most numbers in one [`encode_refused`] frame a client takes.
pub const MAX_REFUSED_PER_FRAME: usize = 1 << 20;

/// Contiguous runs `(first, count)` of `numbers` (sorted, without duplicates, first).
pub fn runs(numbers: &mut Vec<u64>) -> Vec<(u64, usize)> {
    numbers.sort_unstable();
    numbers.dedup();
    let mut out: Vec<(u64, usize)> = Vec::new();
    for &n in numbers.iter() {
        match out.last_mut() {
            Some((first, count)) if *first + *count as u64 == n => *count += 1,
            _ => out.push((n, 1)),
        }
    }
    out
}

/// The mean and percentiles of some latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Latency {
    /// How many.
    pub count: usize,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Latency {
    /// Of `ms` (nearest-rank percentiles; all 0 when empty).
    pub fn of(mut ms: Vec<f64>) -> Self {
        if ms.is_empty() {
            return Latency::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Latency {
            count: ms.len(),
            mean: ms.iter().sum::<f64>() / ms.len() as f64,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
        }
    }
}

/// What a node reported over a run (times in microseconds since the Unix epoch).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeReport {
    /// When each sample (client, number) entered its mempool.
    pub ingested: BTreeMap<(String, u64), u64>,
    /// When it delivered each sample.
    pub delivered_samples: BTreeMap<(String, u64), u64>,
    /// Transactions delivered.
    pub delivered: u64,
    /// Its first and last delivery of a batch with transactions.
    pub first_delivery: Option<u64>,
    /// See `first_delivery`.
    pub last_delivery: Option<u64>,
    /// Transactions its mempool refused, by reason.
    pub refused: BTreeMap<String, u64>,
    /// Per module: seconds busy and events handled.
    pub busy: BTreeMap<String, (f64, u64)>,
}

/// What a load client reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientReport {
    /// When it started sending.
    pub start: Option<u64>,
    /// When it sent each sample (its number).
    pub sent_samples: BTreeMap<u64, u64>,
    /// Transactions sent (to every node).
    pub sent: u64,
    /// Bursts it could not send on time (skipped, never caught up: the rate is a ceiling).
    pub late_bursts: u64,
    /// Transactions sent again to a node whose mempool had refused them (full, or outside the
    /// window); they count against the rate like new ones.
    pub resent: u64,
}

/// A run's settings, as the summary prints them.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// The configuration's label (protocol and options).
    pub label: String,
    /// Nodes.
    pub nodes: usize,
    /// Load clients.
    pub clients: usize,
    /// Transactions per second offered, all clients together.
    pub rate: u64,
    /// Bytes per transaction.
    pub tx_size: usize,
    /// Seconds the clients send.
    pub duration: f64,
}

/// A run's results.
#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    /// The settings.
    pub config: RunConfig,
    /// Transactions per second, consensus.
    pub consensus_tps: f64,
    /// Latency, consensus.
    pub consensus_latency: Latency,
    /// Transactions per second, end to end.
    pub e2e_tps: f64,
    /// Latency, end to end.
    pub e2e_latency: Latency,
    /// Transactions delivered (median over the nodes).
    pub delivered: u64,
    /// Transactions the clients sent.
    pub sent: u64,
    /// Samples sent, and how many (node, sample) deliveries were seen.
    pub samples_sent: usize,
    /// See `samples_sent`.
    pub sample_deliveries: usize,
    /// Refusals by the mempools (all nodes), by reason.
    pub refused: BTreeMap<String, u64>,
    /// Bursts the clients could not send on time.
    pub late_bursts: u64,
    /// Transactions the clients sent again after a refusal.
    pub resent: u64,
    /// Per module kind (`ordering/3.1` counts as `ordering`), all nodes together: seconds busy
    /// and events handled.
    pub busy: BTreeMap<String, (f64, u64)>,
}

impl Results {
    /// Computes the results of a run from what its nodes and clients reported (`clients` by
    /// client ID).
    pub fn compute(
        config: RunConfig,
        nodes: &[NodeReport],
        clients: &BTreeMap<String, ClientReport>,
    ) -> Results {
        let mut delivered: Vec<u64> = nodes.iter().map(|n| n.delivered).collect();
        delivered.sort_unstable();
        let delivered = delivered.get(delivered.len() / 2).copied().unwrap_or(0);
        let last = nodes.iter().filter_map(|n| n.last_delivery).max();
        let first_ingest = nodes.iter().filter_map(|n| n.ingested.values().min()).min().copied();
        let start = clients.values().filter_map(|c| c.start).min();
        let tps = |from: Option<u64>| match (from, last) {
            (Some(a), Some(b)) if b > a => delivered as f64 / ((b - a) as f64 / 1e6),
            _ => 0.0,
        };
        let (mut consensus, mut e2e) = (Vec::new(), Vec::new());
        for n in nodes {
            for ((client, no), at) in &n.delivered_samples {
                if let Some(t) = n.ingested.get(&(client.clone(), *no)) {
                    consensus.push(at.saturating_sub(*t) as f64 / 1e3);
                }
                if let Some(t) = clients.get(client).and_then(|c| c.sent_samples.get(no)) {
                    e2e.push(at.saturating_sub(*t) as f64 / 1e3);
                }
            }
        }
        let mut refused = BTreeMap::new();
        for n in nodes {
            for (r, c) in &n.refused {
                *refused.entry(r.clone()).or_default() += c;
            }
        }
        let mut busy: BTreeMap<String, (f64, u64)> = BTreeMap::new();
        for n in nodes {
            for (m, (secs, events)) in &n.busy {
                let kind = m.split('/').next().unwrap_or(m).to_string();
                let e = busy.entry(kind).or_default();
                e.0 += secs;
                e.1 += events;
            }
        }
        Results {
            busy,
            consensus_tps: tps(first_ingest),
            e2e_tps: tps(start),
            sample_deliveries: e2e.len(),
            consensus_latency: Latency::of(consensus),
            e2e_latency: Latency::of(e2e),
            delivered,
            sent: clients.values().map(|c| c.sent).sum(),
            samples_sent: clients.values().map(|c| c.sent_samples.len()).sum(),
            refused,
            late_bursts: clients.values().map(|c| c.late_bursts).sum(),
            resent: clients.values().map(|c| c.resent).sum(),
            config,
        }
    }

    /// The summary, laid out as the HotStuff and Narwhal benchmark scripts print theirs (plus
    /// percentiles), so that the figures can sit side by side.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let tx = c.tx_size as f64;
        let lat = |l: &Latency| {
            format!(
                "{:.0} ms (p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms)",
                l.mean, l.p50, l.p90, l.p99
            )
        };
        let mut s = String::new();
        let line = "-----------------------------------------";
        let _ = writeln!(s, "{line}\n SUMMARY:\n{line}");
        let _ = writeln!(s, " + CONFIG:");
        let _ = writeln!(s, " Protocol: {}", c.label);
        let _ = writeln!(s, " Faults: 0 node(s)");
        let _ = writeln!(s, " Committee size: {} node(s)", c.nodes);
        let _ = writeln!(s, " Clients: {}", c.clients);
        let _ = writeln!(s, " Input rate: {} tx/s", group(c.rate as f64));
        let _ = writeln!(s, " Transaction size: {} B", c.tx_size);
        let _ = writeln!(s, " Execution time: {:.0} s", c.duration);
        let _ = writeln!(s, "\n + RESULTS:");
        let _ = writeln!(s, " Consensus TPS: {} tx/s", group(self.consensus_tps));
        let _ = writeln!(s, " Consensus BPS: {} B/s", group(self.consensus_tps * tx));
        let _ = writeln!(s, " Consensus latency: {}", lat(&self.consensus_latency));
        let _ = writeln!(s, "\n End-to-end TPS: {} tx/s", group(self.e2e_tps));
        let _ = writeln!(s, " End-to-end BPS: {} B/s", group(self.e2e_tps * tx));
        let _ = writeln!(s, " End-to-end latency: {}", lat(&self.e2e_latency));
        let refused: u64 = self.refused.values().sum();
        let why: Vec<String> = self.refused.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(
            s,
            "\n Sent {} tx, delivered {} tx (median over nodes); samples {} sent, {} deliveries seen",
            group(self.sent as f64),
            group(self.delivered as f64),
            self.samples_sent,
            self.sample_deliveries
        );
        if refused > 0 {
            let _ = writeln!(
                s,
                " Refused by the mempools: {} ({})",
                group(refused as f64),
                why.join(", ")
            );
        }
        if self.resent > 0 {
            let _ = writeln!(s, " Sent again after a refusal: {} tx", group(self.resent as f64));
        }
        if self.late_bursts > 0 {
            let _ = writeln!(s, " Bursts the clients could not send on time: {}", self.late_bursts);
        }
        let _ = writeln!(s, "{line}");
        s
    }

    /// Where the nodes' time went: busy seconds per module kind, all nodes together, busiest
    /// first, with their share of `--duration` on one core (busy time covers each node's whole
    /// life, its start and end included, so the shares run a little high).
    pub fn busy_table(&self) -> String {
        let mut rows: Vec<_> = self.busy.iter().collect();
        rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
        let mut s = String::from(" Busy time per module, all nodes (events handled):\n");
        for (m, (secs, events)) in rows {
            let _ = writeln!(
                s,
                "  {m:<16} {secs:>8.2} s  {:>5.1} % of one core  ({} events)",
                secs / self.config.duration.max(1e-9) * 100.0,
                group(*events as f64)
            );
        }
        s
    }

    /// The CSV header of [`Results::csv_row`].
    pub const CSV_HEADER: &'static str = "label,nodes,clients,offered_tx_s,tx_size,duration_s,consensus_tps,consensus_p50_ms,consensus_p90_ms,consensus_p99_ms,e2e_tps,e2e_mean_ms,e2e_p50_ms,e2e_p90_ms,e2e_p99_ms,delivered,sent,refused";

    /// One CSV row.
    pub fn csv_row(&self) -> String {
        let c = &self.config;
        let (cl, el) = (&self.consensus_latency, &self.e2e_latency);
        format!(
            "{},{},{},{},{},{},{:.0},{:.1},{:.1},{:.1},{:.0},{:.1},{:.1},{:.1},{:.1},{},{},{}",
            c.label.replace(',', ";"),
            c.nodes,
            c.clients,
            c.rate,
            c.tx_size,
            c.duration,
            self.consensus_tps,
            cl.p50,
            cl.p90,
            cl.p99,
            self.e2e_tps,
            el.mean,
            el.p50,
            el.p90,
            el.p99,
            self.delivered,
            self.sent,
            self.refused.values().sum::<u64>()
        )
    }
}

/// `12345.6` → `"12,346"`.
pub fn group(x: f64) -> String {
    let s = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// One point of a plot: a configuration's end-to-end throughput and median latency at one
/// offered rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The configuration.
    pub label: String,
    /// Offered tx/s.
    pub offered: f64,
    /// End-to-end tx/s.
    pub tps: f64,
    /// End-to-end p50 latency, ms.
    pub p50_ms: f64,
}

/// The points of a CSV written by the harness (its header line first; other lines skipped
/// with an error naming them).
pub fn read_csv(text: &str) -> Result<Vec<Point>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("an empty CSV")?.split(',').collect();
    let col = |name: &str| {
        header.iter().position(|h| *h == name).ok_or(format!("the CSV has no {name} column"))
    };
    let (label, offered, tps, p50) =
        (col("label")?, col("offered_tx_s")?, col("e2e_tps")?, col("e2e_p50_ms")?);
    let mut points = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let num = |c: usize| -> Result<f64, String> {
            f.get(c).and_then(|v| v.parse().ok()).ok_or(format!(
                "CSV line {}: column {} is not a number",
                i + 2,
                header[c]
            ))
        };
        points.push(Point {
            label: f.get(label).ok_or(format!("CSV line {}: too short", i + 2))?.to_string(),
            offered: num(offered)?,
            tps: num(tps)?,
            p50_ms: num(p50)?,
        });
    }
    Ok(points)
}

/// Draws end-to-end throughput (x) against median latency (y), one line per configuration, as
/// SVG into `path`.
pub fn plot(points: &[Point], path: &std::path::Path) -> Result<(), String> {
    use plotters::prelude::*;
    if points.is_empty() {
        return Err("nothing to plot".into());
    }
    let mut lines: BTreeMap<&str, Vec<&Point>> = BTreeMap::new();
    for p in points {
        lines.entry(p.label.as_str()).or_default().push(p);
    }
    let max_x = points.iter().map(|p| p.tps).fold(0.0, f64::max).max(1.0) * 1.1;
    // Latency on a log scale: a sweep spans milliseconds below saturation and seconds past it.
    let max_y = points.iter().map(|p| p.p50_ms).fold(1.0, f64::max) * 1.5;
    let min_y = points.iter().map(|p| p.p50_ms).fold(max_y, f64::min).max(0.1) / 1.5;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let e = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Throughput vs latency (end to end, median)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..max_x / 1e3, (min_y..max_y).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("end-to-end throughput (k tx/s)")
        .y_desc("median latency (ms, log scale)")
        .draw()
        .map_err(|x| e(&x))?;
    for (i, (label, mut pts)) in lines.into_iter().enumerate() {
        pts.sort_by(|a, b| a.offered.total_cmp(&b.offered));
        let color = Palette99::pick(i).to_rgba();
        let xy: Vec<(f64, f64)> = pts.iter().map(|p| (p.tps / 1e3, p.p50_ms.max(min_y))).collect();
        chart
            .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(xy.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_resent_burst_carries_the_same_transactions() {
        use super::*;
        // Bursts of 3 from 0: samples 0, 3, 6. Sending 2..=4 again keeps 3 a sample.
        let first: Vec<Tx> =
            [0, 3].iter().flat_map(|f| Burst::new("c", *f, 3, 8).into_txs().0).collect();
        let again = Burst::resend("c", 2, 3, 8, |n| n % 3 == 0).into_txs().0;
        assert_eq!(again, first[2..5].to_vec());
        let mut numbers = vec![7, 3, 4, 9, 8, 3];
        assert_eq!(runs(&mut numbers), vec![(3, 2), (7, 3)]);
        let f = encode_refused(&[5, 6]);
        assert_eq!(f.len(), 4 + 16);
        assert_eq!(&f[..4], &2u32.to_le_bytes());
    }

    use super::*;

    #[test]
    fn a_burst_round_trips_and_marks_its_first_transaction_as_the_sample() {
        let b = Burst::new("client-1", 40, 5, 16);
        let frame = b.encode();
        let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        let back = Burst::decode(&frame[4..]).unwrap();
        assert_eq!(back, b);
        let (client, txs2, samples2) = Burst::decode_txs(&frame[4..]).unwrap();
        let (txs, samples) = back.into_txs();
        assert_eq!((client.as_str(), &txs2, &samples2), ("client-1", &txs, &samples));
        assert_eq!(txs.len(), 5);
        assert_eq!(samples, vec![40]);
        assert_eq!(txs[4].tx_no, 44);
        assert_eq!(txs[1].data.len(), 16);
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason() {
        let good = Burst::new("c", 0, 3, 8).encode();
        let body = &good[4..];
        for cut in 0..body.len() {
            assert!(Burst::decode(&body[..cut]).is_err(), "a frame cut at {cut}");
        }
        let mut v = body.to_vec();
        v[0] = 2;
        assert!(Burst::decode(&v).unwrap_err().contains("version"));
        let mut v = body.to_vec();
        v.push(0);
        assert!(Burst::decode(&v).unwrap_err().contains("announced"));
        let mut v = body.to_vec();
        let at = 1 + 2 + 1 + 8 + 4;
        v[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
        assert!(Burst::decode(&v).is_err());
        let bad = Burst { client: "a b".into(), first: 0, payload: vec![1; 4], tx_size: 4 };
        assert!(Burst::decode(&bad.encode()[4..]).unwrap_err().contains("client ID"));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let l = Latency::of((1..=100).map(f64::from).collect());
        assert_eq!((l.p50, l.p90, l.p99, l.count), (50.0, 90.0, 99.0, 100));
        assert_eq!(l.mean, 50.5);
        assert_eq!(Latency::of(vec![]), Latency::default());
    }

    #[test]
    fn results_follow_the_definitions() {
        let s = |n: u64| ("c0".to_string(), n);
        let node = |shift: u64| NodeReport {
            ingested: [(s(0), 1_000_000 + shift), (s(10), 1_500_000)].into(),
            delivered_samples: [(s(0), 1_050_000 + shift), (s(10), 1_520_000)].into(),
            delivered: 20,
            first_delivery: Some(1_050_000),
            last_delivery: Some(2_000_000),
            refused: [("full".to_string(), 1)].into(),
            busy: [("ordering/1.0".to_string(), (0.5, 10))].into(),
        };
        let client = ClientReport {
            start: Some(990_000),
            sent_samples: [(0, 990_000), (10, 1_490_000)].into(),
            sent: 20,
            late_bursts: 0,
            resent: 0,
        };
        let config = RunConfig {
            label: "iss".into(),
            nodes: 2,
            clients: 1,
            rate: 20,
            tx_size: 512,
            duration: 1.0,
        };
        let r = Results::compute(config, &[node(0), node(0)], &[("c0".to_string(), client)].into());
        assert_eq!(r.delivered, 20);
        assert!((r.consensus_tps - 20.0).abs() < 1e-9); // 20 tx in 1 s
        assert!((r.e2e_tps - 20.0 / 1.01).abs() < 1e-9);
        assert_eq!(r.consensus_latency.p50, 20.0);
        assert_eq!(r.consensus_latency.p99, 50.0);
        assert_eq!(r.e2e_latency.p99, 60.0);
        assert_eq!(r.e2e_latency.count, 4);
        assert_eq!(r.refused["full"], 2);
        assert_eq!(r.busy["ordering"], (1.0, 20));
        assert!(r.busy_table().contains("ordering"));
        let summary = r.summary();
        assert!(summary.contains(" Consensus TPS: 20 tx/s"), "{summary}");
        assert!(summary.contains(" End-to-end latency: 45 ms (p50 30 ms"), "{summary}");
        let csv = format!("{}\n{}\n", Results::CSV_HEADER, r.csv_row());
        let points = read_csv(&csv).unwrap();
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].label, "iss");
        assert_eq!(points[0].p50_ms, 30.0);
    }

    #[test]
    fn the_plot_is_an_svg_with_one_line_per_configuration() {
        let dir = std::env::temp_dir().join(format!("bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plot.svg");
        let p = |label: &str, offered: f64, tps: f64, p50_ms: f64| Point {
            label: label.into(),
            offered,
            tps,
            p50_ms,
        };
        let points = vec![
            p("iss", 10e3, 10e3, 20.0),
            p("iss", 50e3, 49e3, 40.0),
            p("single", 10e3, 10e3, 15.0),
            p("single", 50e3, 30e3, 900.0),
        ];
        plot(&points, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("iss") && svg.contains("single"));
        assert_eq!(svg.matches("stroke-width=\"2\"").count(), 2, "one line per configuration");
        assert_eq!(svg.matches("<circle").count(), 4, "one mark per point");
        std::fs::remove_dir_all(&dir).ok();
        assert!(plot(&[], &path).is_err());
    }

    #[test]
    fn group_puts_thousands_separators() {
        assert_eq!(group(0.4), "0");
        assert_eq!(group(999.0), "999");
        assert_eq!(group(1000.0), "1,000");
        assert_eq!(group(1234567.8), "1,234,568");
    }
}
