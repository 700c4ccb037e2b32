//! Hand-written histories.

use std::time::Duration;

use faultline_history::{Op, OpType, Process};
use serde_json::{json, Value};

use super::*;

/// One history line per tuple: (process, type, f, key, value); positions give time.
fn history(lines: &[(u64, &str, &str, &str, Value)]) -> Vec<Op> {
    lines
        .iter()
        .enumerate()
        .map(|(i, (p, t, f, k, v))| {
            let kind = match *t {
                "invoke" => OpType::Invoke,
                "ok" => OpType::Ok,
                "fail" => OpType::Fail,
                _ => OpType::Info,
            };
            let mut op = Op::new(Process::Client(*p), kind, *f)
                .with_key(*k)
                .with_value(v.clone());
            op.index = i as u64;
            op.time_ns = 1000 * i as u64;
            op
        })
        .collect()
}

fn check(lines: &[(u64, &str, &str, &str, Value)]) -> CheckerResult {
    Linearizable::default().check(&RunData::from_history(history(lines)))
}

fn n() -> Value {
    Value::Null
}

#[test]
fn sequential_register_is_linearizable() {
    let r = check(&[
        (0, "invoke", "read", "r", n()),
        (0, "ok", "read", "r", n()),
        (0, "invoke", "write", "r", json!(1)),
        (0, "ok", "write", "r", json!(1)),
        (1, "invoke", "read", "r", n()),
        (1, "ok", "read", "r", json!(1)),
        (1, "invoke", "cas", "r", json!([1, 2])),
        (1, "ok", "cas", "r", json!([1, 2])),
        (0, "invoke", "read", "r", n()),
        (0, "ok", "read", "r", json!(2)),
    ]);
    assert_eq!(r.valid, Validity::Valid, "{r:?}");
    assert_eq!(r.details["keys"], json!(1));
    assert_eq!(r.details["ops"], json!(5));
}

#[test]
fn concurrent_ops_may_take_effect_in_either_order() {
    // p0 writes 1 while p1 writes 2; reads after both see 1: the write of 2 went first.
    let r = check(&[
        (0, "invoke", "write", "r", json!(1)),
        (1, "invoke", "write", "r", json!(2)),
        (1, "ok", "write", "r", json!(2)),
        (0, "ok", "write", "r", json!(1)),
        (2, "invoke", "read", "r", n()),
        (2, "ok", "read", "r", json!(1)),
    ]);
    assert_eq!(r.valid, Validity::Valid, "{r:?}");
}

#[test]
fn stale_read_is_not_linearizable_and_names_the_window() {
    let r = check(&[
        (0, "invoke", "write", "r", json!(1)),
        (0, "ok", "write", "r", json!(1)),
        (0, "invoke", "write", "r", json!(2)),
        (0, "ok", "write", "r", json!(2)),
        (1, "invoke", "read", "r", n()),
        (1, "ok", "read", "r", json!(1)),
    ]);
    assert_eq!(r.valid, Validity::Invalid, "{r:?}");
    assert_eq!(r.details["invalid_keys"], json!(["r"]));
    let v = &r.details["violations"][0];
    assert_eq!(v["key"], json!("r"));
    assert_eq!(v["violating_index"], json!(4));
    assert_eq!(v["state"], json!(2));
    assert_eq!(v["linearized_count"], json!(2));
    assert_eq!(v["window_indices"], json!([4]));
    let ops = v["ops"].as_array().unwrap();
    assert_eq!(ops.last().unwrap()["role"], json!("violating"));
    assert_eq!(ops.last().unwrap()["result"], json!(1));
    assert!(
        r.details["summary"]
            .as_str()
            .unwrap()
            .contains("1 of 1 keys"),
        "{r:?}"
    );
}

#[test]
fn lost_acknowledged_write_is_not_linearizable() {
    // The write of 2 was acknowledged; a later read sees the initial state.
    let r = check(&[
        (0, "invoke", "write", "r", json!(2)),
        (0, "ok", "write", "r", json!(2)),
        (1, "invoke", "read", "r", n()),
        (1, "ok", "read", "r", n()),
    ]);
    assert_eq!(r.valid, Validity::Invalid, "{r:?}");
}

#[test]
fn info_write_may_take_effect() {
    // The write of 3 timed out, then a read saw 3: it took effect.
    let r = check(&[
        (0, "invoke", "write", "r", json!(1)),
        (0, "ok", "write", "r", json!(1)),
        (1, "invoke", "write", "r", json!(3)),
        (1, "info", "write", "r", json!(3)),
        (2, "invoke", "read", "r", n()),
        (2, "ok", "read", "r", json!(3)),
        (2, "invoke", "read", "r", n()),
        (2, "ok", "read", "r", json!(3)),
    ]);
    assert_eq!(r.valid, Validity::Valid, "{r:?}");
}

#[test]
fn info_write_may_not_take_effect() {
    // The write of 3 timed out and nobody ever saw it.
    let r = check(&[
        (0, "invoke", "write", "r", json!(1)),
        (0, "ok", "write", "r", json!(1)),
        (1, "invoke", "write", "r", json!(3)),
        (1, "info", "write", "r", json!(3)),
        (2, "invoke", "read", "r", n()),
        (2, "ok", "read", "r", json!(1)),
    ]);
    assert_eq!(r.valid, Validity::Valid, "{r:?}");
}

#[test]
fn info_write_takes_effect_once_not_twice() {
    // Seen, then overwritten, then seen again: it cannot take effect twice.
    let r = check(&[
        (1, "invoke", "write", "r", json!(3)),
        (1, "info", "write", "r", json!(3)),
        (2, "invoke", "read", "r", n()),
        (2, "ok", "read", "r", json!(3)),
        (0, "invoke", "write", "r", json!(4)),
        (0, "ok", "write", "r", json!(4)),
        (2, "invoke", "read", "r", n()),
        (2, "ok", "read", "r", json!(3)),
    ]);
    assert_eq!(r.valid, Validity::Invalid, "{r:?}");
}

#[test]
fn info_write_cannot_take_effect_before_its_invoke() {
    let r = check(&[
        (2, "invoke", "read", "r", n()),
        (2, "ok", "read", "r", json!(3)),
        (1, "invoke", "write", "r", json!(3)),
        (1, "info", "write", "r", json!(3)),
    ]);
    assert_eq!(r.valid, Validity::Invalid, "{r:?}");
}

#[test]
fn a_never_completed_write_is_indeterminate() {
    let r = check(&[
        (1, "invoke", "write", "r", json!(3)),
        (2, "invoke", "read", "r", n()),
        (2, "ok", "read", "r", json!(3)),
    ]);
    assert_eq!(r.valid, Validity::Valid, "{r:?}");
}

#[test]
fn failed_write_did_not_happen() {
    let r = check(&[
        (1, "invoke", "write", "r", json!(3)),
        (1, "fail", "write", "r", json!(3)),
        (2, "invoke", "read", "r", n()),
        (2, "ok", "read", "r", json!(3)),
    ]);
    assert_eq!(r.valid, Validity::Invalid, "{r:?}");
}

#[test]
fn cas_semantics() {
    let base = [
        (0, "invoke", "write", "r", json!(1)),
        (0, "ok", "write", "r", json!(1)),
    ];
    let with = |rest: &[(u64, &str, &str, &str, Value)]| {
        let mut all = base.to_vec();
        all.extend_from_slice(rest);
        check(&all).valid
    };
    // Swapped from 1 to 2, read 2.
    assert_eq!(
        with(&[
            (1, "invoke", "cas", "r", json!([1, 2])),
            (1, "ok", "cas", "r", json!([1, 2])),
            (2, "invoke", "read", "r", n()),
            (2, "ok", "read", "r", json!(2)),
        ]),
        Validity::Valid
    );
    // A cas from 5 cannot swap when the register holds 1.
    assert_eq!(
        with(&[
            (1, "invoke", "cas", "r", json!([5, 2])),
            (1, "ok", "cas", "r", json!([5, 2])),
        ]),
        Validity::Invalid
    );
    // A cas from 1 that says its comparison failed, while the register holds 1.
    assert_eq!(
        with(&[
            (1, "invoke", "cas", "r", json!([1, 2])),
            (1, "fail", "cas", "r", json!([1, 2])),
        ]),
        Validity::Invalid
    );
    // A cas from 5 that failed: fine.
    assert_eq!(
        with(&[
            (1, "invoke", "cas", "r", json!([5, 2])),
            (1, "fail", "cas", "r", json!([5, 2])),
            (2, "invoke", "read", "r", n()),
            (2, "ok", "read", "r", json!(1)),
        ]),
        Validity::Valid
    );
    // An info cas from 1 to 2 may have swapped...
    assert_eq!(
        with(&[
            (1, "invoke", "cas", "r", json!([1, 2])),
            (1, "info", "cas", "r", json!([1, 2])),
            (2, "invoke", "read", "r", n()),
            (2, "ok", "read", "r", json!(2)),
        ]),
        Validity::Valid
    );
    // ... but an info cas from 7 could not have (the register never held 7).
    assert_eq!(
        with(&[
            (1, "invoke", "cas", "r", json!([7, 2])),
            (1, "info", "cas", "r", json!([7, 2])),
            (2, "invoke", "read", "r", n()),
            (2, "ok", "read", "r", json!(2)),
        ]),
        Validity::Invalid
    );
}

#[test]
fn a_cas_that_failed_with_an_error_did_not_happen() {
    let mut h = history(&[
        (0, "invoke", "write", "r", json!(1)),
        (0, "ok", "write", "r", json!(1)),
        (1, "invoke", "cas", "r", json!([1, 2])),
        (1, "fail", "cas", "r", json!([1, 2])),
    ]);
    h[3].error = Some("CLUSTERDOWN".into());
    let r = Linearizable::default().check(&RunData::from_history(h));
    assert_eq!(r.valid, Validity::Valid, "{r:?}");
}

#[test]
fn keys_are_independent() {
    let r = check(&[
        (0, "invoke", "write", "a", json!(1)),
        (0, "ok", "write", "a", json!(1)),
        (1, "invoke", "read", "b", n()),
        (1, "ok", "read", "b", n()),
        (1, "invoke", "read", "b", n()),
        (1, "ok", "read", "b", json!(1)),
    ]);
    assert_eq!(r.valid, Validity::Invalid, "{r:?}");
    assert_eq!(r.details["invalid_keys"], json!(["b"]));
    assert_eq!(r.details["keys"], json!(2));
}

#[test]
fn kv_append_and_get() {
    let ok = check(&[
        (0, "invoke", "append", "k", json!("x")),
        (1, "invoke", "append", "k", json!("y")),
        (0, "ok", "append", "k", json!("x")),
        (1, "ok", "append", "k", json!("y")),
        (2, "invoke", "get", "k", n()),
        (2, "ok", "get", "k", json!("yx")),
    ]);
    assert_eq!(ok.valid, Validity::Valid, "{ok:?}");
    let bad = check(&[
        (0, "invoke", "append", "k", json!("x")),
        (0, "ok", "append", "k", json!("x")),
        (1, "invoke", "append", "k", json!("y")),
        (1, "ok", "append", "k", json!("y")),
        (2, "invoke", "get", "k", n()),
        (2, "ok", "get", "k", json!("yx")),
    ]);
    assert_eq!(bad.valid, Validity::Invalid, "{bad:?}");
    let empty = check(&[
        (2, "invoke", "get", "k", n()),
        (2, "ok", "get", "k", json!("")),
        (0, "invoke", "put", "k", json!("z")),
        (0, "ok", "put", "k", json!("z")),
        (2, "invoke", "get", "k", n()),
        (2, "ok", "get", "k", json!("z")),
    ]);
    assert_eq!(empty.valid, Validity::Valid, "{empty:?}");
}

#[test]
fn out_of_budget_is_unknown_and_names_the_key() {
    // Many concurrent writes none of which is ever read, and a final impossible read:
    // exponential without the memo; with a zero budget it cannot finish.
    let mut lines = Vec::new();
    for p in 0..12u64 {
        lines.push((p, "invoke", "write", "hard", json!(p)));
    }
    for p in 0..12u64 {
        lines.push((p, "ok", "write", "hard", json!(p)));
    }
    lines.push((99, "invoke", "read", "hard", n()));
    lines.push((99, "ok", "read", "hard", json!(1000)));
    let checker = Linearizable {
        time_budget: Some(Duration::ZERO),
        memory_budget_bytes: 1 << 30,
    };
    let r = checker.check(&RunData::from_history(history(&lines)));
    assert_eq!(r.valid, Validity::Unknown, "{r:?}");
    assert_eq!(r.details["unknown_keys"][0]["key"], json!("hard"));
    let r = Linearizable::default().check(&RunData::from_history(history(&lines)));
    assert_eq!(r.valid, Validity::Invalid, "{r:?}");
}

#[test]
fn unreadable_values_make_the_key_unknown_not_valid() {
    let r = check(&[
        (0, "invoke", "write", "r", json!({"a": 1})),
        (0, "ok", "write", "r", json!({"a": 1})),
    ]);
    assert_eq!(r.valid, Validity::Unknown, "{r:?}");
}

#[test]
fn nemesis_and_other_functions_are_ignored() {
    let mut h = history(&[
        (0, "invoke", "write", "r", json!(1)),
        (0, "ok", "write", "r", json!(1)),
        (1, "invoke", "add", "s", json!(5)),
        (1, "ok", "add", "s", json!(5)),
    ]);
    h.push(Op::new(Process::Nemesis, OpType::Invoke, "partition"));
    let r = Linearizable::default().check(&RunData::from_history(h));
    assert_eq!(r.valid, Validity::Valid, "{r:?}");
    assert_eq!(r.details["keys"], json!(1));
}
