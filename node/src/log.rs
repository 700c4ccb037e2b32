//! [`Log`]: the node's log file, in Redis's line format (`pid:role dd Mon yyyy
//! hh:mm:ss.mmm <level> message`), so log checkers and people read it as they read
//! Redis's.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where log lines go.
pub struct Log {
    file: Mutex<Option<std::fs::File>>,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl Log {
    /// Opens (appends to) `path`, or logs to stdout when `None`.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn open(path: Option<PathBuf>) -> std::io::Result<Log> {
        let file = match path {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => None,
        };
        Ok(Log {
            file: Mutex::new(file),
        })
    }

    /// Writes one line; `level` is Redis's marker (`*` notice, `#` warning, `-` verbose).
    pub fn line(&self, role: char, level: char, msg: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs() as i64;
        let (y, m, d) = civil(secs.div_euclid(86_400));
        let s = secs.rem_euclid(86_400);
        let text = format!(
            "{}:{role} {d:02} {} {y} {:02}:{:02}:{:02}.{:03} {level} {msg}\n",
            std::process::id(),
            MONTHS[(m - 1) as usize],
            s / 3600,
            (s / 60) % 60,
            s % 60,
            now.subsec_millis()
        );
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        match f.as_mut() {
            Some(f) => {
                let _ = f.write_all(text.as_bytes());
            }
            None => print!("{text}"),
        }
    }
}
