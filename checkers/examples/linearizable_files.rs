//! Checks history files with the `linearizable` checker alone and prints, per file, the
//! verdict and the time taken in-process (reading + parsing + checking), best of N runs:
//! the measurement behind the comparison with Porcupine in the closing note.
//!
//! `cargo run --release -p faultline-checkers --example linearizable_files -- [-n N] FILE...`

use std::time::{Duration, Instant};

use faultline_checkers::{Checker, Linearizable, RunData};
use faultline_history::import;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut reps = 1;
    if args.first().map(String::as_str) == Some("-n") {
        reps = args[1].parse().expect("-n N");
        args.drain(..2);
    }
    let mut total = Duration::ZERO;
    let mut worst = (Duration::ZERO, String::new());
    for file in &args {
        let mut best = Duration::MAX;
        let mut verdict = String::new();
        for _ in 0..reps {
            let start = Instant::now();
            let text = std::fs::read_to_string(file).expect("readable file");
            let result = import::detect(&text)
                .and_then(|f| import::parse(&text, f))
                .map(|ops| Linearizable::default().check(&RunData::from_history(ops)));
            let took = start.elapsed();
            best = best.min(took);
            verdict = match result {
                Ok(r) if std::env::var_os("SLOWEST").is_some() => {
                    format!("{}\t{}", r.valid.as_str(), r.details["slowest_keys"])
                }
                Ok(r) => r.valid.as_str().to_string(),
                Err(e) => format!("unreadable ({e})"),
            };
        }
        total += best;
        if best > worst.0 {
            worst = (best, file.clone());
        }
        println!("{file}\t{verdict}\t{}", best.as_micros());
    }
    eprintln!(
        "{} files, total {:.3} ms, worst {:.3} ms ({})",
        args.len(),
        total.as_secs_f64() * 1e3,
        worst.0.as_secs_f64() * 1e3,
        worst.1
    );
}
