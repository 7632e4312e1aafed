//! The benchmark harness end to end: four node processes and two load clients, a sweep of two
//! offered rates, the summary in the HotStuff/Narwhal form, the CSV and the SVG plot; and its
//! refusal of bad settings. Rates are low (a debug build on a shared machine): what is checked is
//! that everything the harness promises is produced and adds up, not how fast it is.

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bench"))
}

#[test]
fn a_sweep_prints_summaries_and_writes_the_csv_and_the_plot() {
    let out = std::env::temp_dir().join(format!("bench-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = bench()
        .args(["--nodes", "4", "--clients", "2", "--tx-size", "128", "--duration", "3"])
        .args(["--sweep", "400,800", "--stats", "--out"])
        .arg(&out)
        .output()
        .expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stdout.matches(" SUMMARY:").count(), 2, "{stdout}");
    for line in [
        " Committee size: 4 node(s)",
        " Input rate: 400 tx/s",
        " Input rate: 800 tx/s",
        " Transaction size: 128 B",
        " Consensus TPS: ",
        " Consensus latency: ",
        " End-to-end TPS: ",
        " End-to-end latency: ",
        " Busy time per module, all nodes",
    ] {
        assert!(stdout.contains(line), "no {line:?} in\n{stdout}");
    }
    assert!(stderr.contains("live"), "the progress line is on standard error:\n{stderr}");

    // The CSV: a header and one row per offered rate, with transactions delivered and sampled.
    let csv = std::fs::read_to_string(out.join("bench.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert_eq!(rows[0].join(","), examples::bench::Results::CSV_HEADER);
    let col = |name: &str| rows[0].iter().position(|h| *h == name).unwrap();
    for (row, offered) in rows[1..].iter().zip([400, 800]) {
        assert_eq!(row[col("offered_tx_s")], offered.to_string());
        assert_eq!(row[col("label")], "iss-bucketed-simple");
        let sent: u64 = row[col("sent")].parse().unwrap();
        let delivered: u64 = row[col("delivered")].parse().unwrap();
        assert!(sent > 0 && sent <= offered * 3, "the clients never exceed the rate: {sent}");
        assert!(delivered > 0 && delivered <= sent, "{delivered} of {sent} delivered");
        let p50: f64 = row[col("e2e_p50_ms")].parse().unwrap();
        assert!(p50 > 0.0, "samples were delivered and timed");
    }
    let points = examples::bench::read_csv(&csv).unwrap();
    assert_eq!(points.len(), 2);

    // The plot of every row, and the per-run logs and progress.
    let svg = std::fs::read_to_string(out.join("bench.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("iss-bucketed-simple"));
    let run_dir = out.join("iss-bucketed-simple-400");
    for f in ["membership.toml", "node-0.log", "client-0.log", "progress.csv"] {
        assert!(run_dir.join(f).exists(), "{f} in {}", run_dir.display());
    }

    // `bench plot` redraws it from the CSV.
    let replot = out.join("again.svg");
    let st =
        bench().arg("plot").arg(out.join("bench.csv")).arg("--out").arg(&replot).status().unwrap();
    assert!(st.success() && std::fs::read_to_string(&replot).unwrap().starts_with("<svg"));
    std::fs::remove_dir_all(&out).ok();
}

/// Runs the harness with `args` into a fresh directory (named after `name`); its standard output,
/// the directory and the CSV's data row (`--rate`: one run).
fn run_once(name: &str, args: &[&str]) -> (String, std::path::PathBuf, Vec<String>) {
    let out = std::env::temp_dir().join(format!("bench-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = bench().args(args).arg("--out").arg(&out).output().expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let csv = std::fs::read_to_string(out.join("bench.csv")).unwrap();
    let row = csv.lines().nth(1).unwrap().split(',').map(str::to_owned).collect();
    (stdout, out, row)
}

/// A CSV column's index.
fn col(name: &str) -> usize {
    examples::bench::Results::CSV_HEADER.split(',').position(|h| h == name).unwrap()
}

#[test]
fn clients_can_send_to_one_node_each() {
    // `--submit-to one` with Trantor's redundant mode: each node proposes what its own clients
    // sent; everything is delivered at every node all the same.
    let (stdout, out, row) = run_once(
        "one",
        &[
            "--nodes",
            "4",
            "--clients",
            "4",
            "--tx-size",
            "128",
            "--duration",
            "3",
            "--rate",
            "400",
            "--mode",
            "redundant",
            "--submit-to",
            "one",
        ],
    );
    assert!(stdout.contains(" Protocol: iss-redundant-simple-submit-to-one"), "{stdout}");
    let sent: u64 = row[col("sent")].parse().unwrap();
    let delivered: u64 = row[col("delivered")].parse().unwrap();
    assert!(sent > 0 && sent <= 400 * 3, "{row:?}");
    assert!(delivered > 0 && row[col("e2e_p50_ms")].parse::<f64>().unwrap() > 0.0, "{row:?}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn what_a_full_mempool_refuses_is_sent_again() {
    // Mempools of 60 transactions against bursts of 50 per client and node: they refuse as
    // `full`, the nodes tell the clients, and the clients send those numbers again, so no
    // number is left out for good (a gap would stall its client's window: `outsidewindow`).
    let (stdout, out, row) = run_once(
        "full",
        &[
            "--nodes",
            "4",
            "--clients",
            "2",
            "--tx-size",
            "64",
            "--duration",
            "4",
            "--rate",
            "2000",
            "--batch-size",
            "20",
            "--mempool-capacity",
            "60",
        ],
    );
    let line = |prefix: &str| stdout.lines().find(|l| l.starts_with(prefix)).map(str::to_owned);
    let refused = line(" Refused by the mempools: ").expect("refusals: the mempools were full");
    assert!(refused.contains("full") && !refused.contains("outsidewindow"), "{refused}");
    let resent = line(" Sent again after a refusal: ").expect("the clients sent them again");
    let n = |l: &str| -> u64 {
        let figure = l.split(':').nth(1).unwrap().split_whitespace().next().unwrap();
        figure.replace(',', "").parse().unwrap()
    };
    assert!(n(&resent) > 0, "{resent}");
    // Delivered: more than the mempools could ever have held at once.
    let delivered: u64 = row[col("delivered")].parse().unwrap();
    assert!(delivered > 4 * 60, "{row:?}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn bad_settings_are_refused_with_a_reason() {
    for (args, reason) in [
        (vec!["--nodes", "0"], "--nodes and --clients must be at least 1"),
        (vec!["--tx-size", "0"], "--tx-size must be between"),
        (vec!["--duration", "0"], "--duration must be between"),
        (vec!["--protocol", "hotstuff"], "expected iss or pbft"),
        (vec!["--clients", "4", "--rate", "3"], "at least one transaction per second per client"),
        (vec!["--batch-size", "0"], "must be at least 1"),
        (vec!["--submit-to", "some"], "invalid value 'some'"),
        (vec!["--batch-size", "50", "--mempool-capacity", "10"], "must hold at least one batch"),
        (vec!["--clients", "1", "--rate", "400", "--tx-size", "500000"], "use more --clients"),
    ] {
        let out = bench().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
    let out = bench().args(["plot", "/nonexistent/bench.csv", "--out", "/tmp/x.svg"]).output();
    let out = out.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/bench.csv"));
}
