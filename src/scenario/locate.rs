//! Where in a scenario's text an error is: serde reports dotted paths
//! (`nemesis.faults[1].target`) and, for errors raised by our own checks or inside
//! internally tagged values, places them at the start of the enclosing mapping; a person
//! needs the key's own line. Block-style YAML only, which is what scenarios are.

/// serde_yaml_ng repeats the path and the location in its message; keep the rest.
pub(crate) fn clean_message(message: &str, path: &str) -> String {
    let mut m = message;
    if let Some(i) = m.rfind(" at line ") {
        m = &m[..i];
    }
    if let Some((head, rest)) = m.split_once(": ") {
        if !head.contains(' ') && path.starts_with(head) {
            m = rest;
        }
    }
    m.to_string()
}

/// The line and column of what a dotted path names (`workload.rate`,
/// `nemesis.faults[1].target`), for block-style YAML. Serde loses the inner path of
/// internally tagged values (a fault's fields); then `hint` (the word the error quotes,
/// such as an unknown variant or field) is looked for inside the block the path reaches.
pub(crate) fn locate(text: &str, path: &str, hint: Option<&str>) -> Option<(usize, usize)> {
    if path == "." || path.is_empty() {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let skip = |l: &str| {
        let b = l.trim_start();
        b.is_empty() || b.starts_with('#')
    };
    // The current block: lines[lo..hi], whose lines are indented at least `min`.
    let (mut lo, mut hi, mut min) = (0, lines.len(), 0);
    let mut found = None;
    for segment in path.split('.') {
        let (key, index) = match segment.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        // The key, possibly as the first key of a list item (`- key:`).
        let mut hit = None;
        for (i, &line) in lines.iter().enumerate().take(hi).skip(lo) {
            if skip(line) {
                continue;
            }
            if indent_of(line) < min {
                break;
            }
            let body = line.trim_start();
            let (body, col) = match body.strip_prefix("- ") {
                Some(b) => (b, indent_of(line) + 2),
                None => (body, indent_of(line)),
            };
            if body
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with(':'))
            {
                hit = Some((i, col));
                break;
            }
        }
        let (i, col) = hit?;
        found = Some((i + 1, col + 1));
        let end = (i + 1..hi)
            .find(|&j| !skip(lines[j]) && indent_of(lines[j]) <= col)
            .unwrap_or(hi);
        (lo, hi, min) = (i + 1, end, col + 1);
        if let Some(k) = index {
            let items: Vec<usize> = (lo..hi)
                .filter(|&j| lines[j].trim_start().starts_with("- "))
                .collect();
            let item_indent = items.first().map(|&j| indent_of(lines[j]))?;
            let items: Vec<usize> = items
                .into_iter()
                .filter(|&j| indent_of(lines[j]) == item_indent)
                .collect();
            let start = *items.get(k)?;
            let end = items.get(k + 1).copied().unwrap_or(hi);
            found = Some((start + 1, item_indent + 1));
            (lo, hi, min) = (start, end, item_indent);
        }
    }
    if let Some(word) = hint {
        let from = found.map_or(0, |(line, _)| line - 1);
        for (j, line) in lines.iter().enumerate().take(hi).skip(from) {
            if let Some(c) = line.find(word) {
                return Some((j + 1, c + 1));
            }
        }
    }
    found
}

/// The first word a serde message quotes in backticks (`unknown variant `circle``).
pub(crate) fn quoted(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

pub(crate) fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(needle))
        .map_or(0, |i| i + 1)
}
