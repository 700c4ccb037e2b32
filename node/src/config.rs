//! [`Config`]: the node's settings, read from a redis.conf-style file and `--name value`
//! arguments (as `redis-server` takes them), kept as name -> value so `CONFIG GET/SET/
//! REWRITE` work for any parameter; the ones the node acts on have accessors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::bugs::Bugs;

/// Every parameter by name, and the file it came from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Parameters (lowercase names), values as written (quotes removed).
    pub params: BTreeMap<String, String>,
    /// The config file, for `CONFIG REWRITE`.
    pub file: Option<PathBuf>,
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        v[1..v.len() - 1].replace("\\\"", "\"")
    } else {
        v.to_string()
    }
}

impl Config {
    /// Parses the command line: an optional config file, then `--name value` pairs.
    ///
    /// # Errors
    /// When the file cannot be read or an argument is malformed.
    pub fn from_args(args: &[String]) -> Result<Config> {
        let mut c = Config {
            params: BTreeMap::new(),
            file: None,
        };
        for (k, v) in [
            ("bind", "127.0.0.1"),
            ("port", "6379"),
            ("cluster-enabled", "no"),
            ("cluster-config-file", "nodes.conf"),
            ("cluster-node-timeout", "15000"),
            ("dir", "."),
            ("save", ""),
            ("appendonly", "no"),
            ("loglevel", "notice"),
            ("faultline-bugs", ""),
        ] {
            c.params.insert(k.into(), v.into());
        }
        let mut i = 0;
        if let Some(first) = args.first() {
            if !first.starts_with("--") {
                let text = std::fs::read_to_string(first)
                    .with_context(|| format!("reading config file {first}"))?;
                c.read_text(&text)?;
                c.file = Some(std::fs::canonicalize(first).unwrap_or_else(|_| first.into()));
                i = 1;
            }
        }
        while i < args.len() {
            let Some(name) = args[i].strip_prefix("--") else {
                bail!("unexpected argument {:?} (want --name value)", args[i]);
            };
            let value = args.get(i + 1).cloned().unwrap_or_default();
            c.params.insert(name.to_lowercase(), unquote(&value));
            i += 2;
        }
        c.bugs().context("faultline-bugs")?;
        Ok(c)
    }

    fn read_text(&mut self, text: &str) -> Result<()> {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            self.params.insert(k.to_lowercase(), unquote(v));
        }
        Ok(())
    }

    /// A parameter's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        self.get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// The address to listen on (the first of `bind`).
    pub fn bind(&self) -> String {
        self.get("bind")
            .unwrap_or("127.0.0.1")
            .split_whitespace()
            .next()
            .unwrap_or("127.0.0.1")
            .to_string()
    }

    /// Client port.
    pub fn port(&self) -> u16 {
        self.num("port", 6379)
    }

    /// Bus port listened on: `cluster-port`, else client port + 10000.
    pub fn bus_port(&self) -> u16 {
        match self.num("cluster-port", 0u16) {
            0 => self.port() + 10000,
            p => p,
        }
    }

    /// The bus port peers are told to use (`cluster-announce-bus-port`, for the bus proxy).
    pub fn announced_bus_port(&self) -> u16 {
        match self.num("cluster-announce-bus-port", 0u16) {
            0 => self.bus_port(),
            p => p,
        }
    }

    /// The client port announced.
    pub fn announced_port(&self) -> u16 {
        match self.num("cluster-announce-port", 0u16) {
            0 => self.port(),
            p => p,
        }
    }

    /// The address announced: `cluster-announce-ip`, else the bind address.
    pub fn announced_ip(&self) -> String {
        match self.get("cluster-announce-ip") {
            Some(ip) if !ip.is_empty() => ip.to_string(),
            _ => self.bind(),
        }
    }

    /// Cluster mode.
    pub fn cluster_enabled(&self) -> bool {
        self.get("cluster-enabled") == Some("yes")
    }

    /// `cluster-node-timeout`, ms.
    pub fn node_timeout_ms(&self) -> u64 {
        self.num("cluster-node-timeout", 15000u64).max(50)
    }

    /// Working directory.
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(self.get("dir").unwrap_or("."))
    }

    /// nodes.conf, inside [`Config::dir`].
    pub fn nodes_conf(&self) -> PathBuf {
        self.dir()
            .join(self.get("cluster-config-file").unwrap_or("nodes.conf"))
    }

    /// The log file, `None` for stdout.
    pub fn log_file(&self) -> Option<PathBuf> {
        self.get("logfile")
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)
    }

    /// The bug switches (`faultline-bugs a,b`).
    ///
    /// # Errors
    /// When a name is not a known switch.
    pub fn bugs(&self) -> Result<Bugs> {
        Bugs::parse(self.get("faultline-bugs").unwrap_or(""))
    }

    /// `CONFIG SET`: only what is safe to change live.
    ///
    /// # Errors
    /// For an unknown or immutable parameter.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let name = name.to_lowercase();
        if [
            "bind",
            "port",
            "cluster-enabled",
            "cluster-port",
            "dir",
            "cluster-config-file",
            "faultline-bugs",
        ]
        .contains(&name.as_str())
        {
            bail!("ERR CONFIG SET failed (possibly related to argument '{name}') - can't set immutable config");
        }
        self.params.insert(name, value.to_string());
        Ok(())
    }

    /// The file text `CONFIG REWRITE` writes: every parameter.
    pub fn render(&self) -> String {
        let mut out = String::from("# written by faultline-node CONFIG REWRITE\n");
        for (k, v) in &self.params {
            if v.is_empty() || v.contains(char::is_whitespace) || v.contains('"') {
                out.push_str(&format!("{k} \"{}\"\n", v.replace('"', "\\\"")));
            } else {
                out.push_str(&format!("{k} {v}\n"));
            }
        }
        out
    }
}
