use std::io::Write;

use super::{rec, temp_log};
use crate::metering::reader::{read_log, ReadError};

fn line(id: &str) -> String {
    let mut s = serde_json::to_string(&rec(id)).expect("serialize");
    s.push('\n');
    s
}

#[test]
fn clean_log_reads_every_record() {
    let (_d, path) = temp_log();
    std::fs::write(&path, format!("{}{}", line("a"), line("b"))).expect("write");
    let log = read_log(&path).expect("read");
    assert_eq!(log.records, vec![rec("a"), rec("b")]);
    assert_eq!(log.torn_tail, None);
}

#[test]
fn empty_log_is_empty() {
    let (_d, path) = temp_log();
    std::fs::write(&path, "").expect("write");
    let log = read_log(&path).expect("read");
    assert!(log.records.is_empty());
    assert_eq!(log.torn_tail, None);
}

#[test]
fn torn_last_line_without_newline_is_reported() {
    let (_d, path) = temp_log();
    let first = line("a");
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(first.as_bytes()).expect("write");
    f.write_all(&line("b").as_bytes()[..40]).expect("write");
    drop(f);
    let log = read_log(&path).expect("read");
    assert_eq!(log.records, vec![rec("a")]);
    assert_eq!(log.torn_tail, Some(first.len()));
}

#[test]
fn complete_json_without_newline_is_still_torn() {
    let (_d, path) = temp_log();
    let first = line("a");
    let second = line("b");
    std::fs::write(&path, format!("{first}{}", second.trim_end())).expect("write");
    let log = read_log(&path).expect("read");
    assert_eq!(log.records, vec![rec("a")]);
    assert_eq!(log.torn_tail, Some(first.len()));
}

#[test]
fn unparsable_last_line_with_newline_is_torn() {
    let (_d, path) = temp_log();
    let a = line("a");
    let b = line("b");
    std::fs::write(&path, format!("{a}{b}{{\"ts\":\"x\"\n")).expect("write");
    let log = read_log(&path).expect("read");
    assert_eq!(log.records.len(), 2);
    assert_eq!(log.torn_tail, Some(a.len() + b.len()));
}

#[test]
fn corrupt_middle_line_is_an_error_naming_it() {
    let (_d, path) = temp_log();
    let a = line("a");
    std::fs::write(&path, format!("{a}not json\n{}", line("c"))).expect("write");
    match read_log(&path) {
        Err(ReadError::Corrupt { line, offset, .. }) => {
            assert_eq!(line, 2);
            assert_eq!(offset, a.len());
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn missing_file_is_io_error() {
    let (_d, path) = temp_log();
    assert!(matches!(read_log(&path), Err(ReadError::Io { .. })));
}

#[test]
fn a_record_cut_short_mid_file_is_a_fragment_and_blank_lines_are_skipped() {
    let (_d, path) = temp_log();
    let a = line("a");
    let cut = &line("b")[..40];
    std::fs::write(&path, format!("{a}\n{cut}\n{}", line("c"))).expect("write");
    let log = read_log(&path).expect("read");
    assert_eq!(log.records, vec![rec("a"), rec("c")]);
    assert_eq!(log.fragments, vec![a.len() + 1]);
    assert_eq!(log.torn_tail, None);
}
