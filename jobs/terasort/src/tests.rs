//! Tests of `jobs/terasort/src/lib.rs`.
use super::*;
use harrow_sdk::testing;

fn generated(rows: std::ops::Range<u64>) -> String {
    let mut text = String::new();
    for row in rows {
        record_line(row, &mut text);
        text.push_str("\r\n");
    }
    text
}

#[test]
fn records_have_the_gensort_ascii_layout() {
    let mut line = String::new();
    record_line(0x2a, &mut line);
    assert_eq!(line.len(), LINE_BYTES);
    let bytes = line.as_bytes();
    assert!(bytes[..KEY_BYTES].iter().all(|b| (b' '..=b'~').contains(b)));
    assert_eq!(&line[10..12], "  ");
    assert_eq!(&line[12..44], format!("{:032X}", 0x2a));
    assert_eq!(&line[44..46], "  ");
    assert!(line[46..].chars().all(|c| c.is_ascii_hexdigit()));
    // A pure function of the row number.
    let mut again = String::new();
    record_line(0x2a, &mut again);
    assert_eq!(line, again);
}

#[test]
fn sort_and_validate_in_process() {
    let text = generated(0..500);
    let sort = harrow_sdk::batch_runtime(TeraSort);
    let sorted = testing::run_text(sort.as_ref(), &[("in", &text)]).unwrap();
    assert_eq!(sorted.len(), 500);
    assert!(
        sorted
            .iter()
            .all(|r| r.len() == LINE_BYTES + 1 && r.ends_with('\r'))
    );
    assert!(
        sorted
            .windows(2)
            .all(|w| w[0][..KEY_BYTES] <= w[1][..KEY_BYTES])
    );

    let validate = harrow_sdk::batch_runtime(TeraValidate::new(&JobArgs::default()).unwrap());
    let sorted_text: String = sorted.iter().map(|r| format!("{r}\n")).collect();
    let report = testing::run_text(validate.as_ref(), &[("part-r-00000", &sorted_text)]);
    let expected: u64 = text
        .lines()
        .map(|l| record_checksum(l.trim_end_matches('\r').as_bytes()))
        .sum();
    assert_eq!(
        report.unwrap(),
        [
            "records\t500".to_string(),
            format!("checksum\t{expected}"),
            "sorted\ttrue".to_string(),
        ]
    );
}

#[test]
fn validate_finds_disorder_inside_and_between_files() {
    let mut lines: Vec<String> = generated(0..40).lines().map(str::to_string).collect();
    lines.sort();
    let text = |lines: &[String]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let validate = harrow_sdk::batch_runtime(TeraValidate::new(&JobArgs::default()).unwrap());
    // The files in name order: b's first key is below a's last.
    let error = testing::run_text(
        validate.as_ref(),
        &[("b", &text(&lines[..20])), ("a", &text(&lines[20..]))],
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("not sorted: b at byte 0"), "{error}");
    // Inside one file, at the byte offset of the record out of place
    // (these lines end in `\n` alone).
    let mut swapped = lines.clone();
    swapped.swap(3, 4);
    let error = testing::run_text(validate.as_ref(), &[("a", &text(&swapped))])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("a at byte {}", 4 * (LINE_BYTES + 1))),
        "{error}"
    );
    // Reported, not failed, when order is not required.
    let lenient = harrow_sdk::batch_runtime(
        TeraValidate::new(&JobArgs::parse_pairs(["require_sorted=false"]).unwrap()).unwrap(),
    );
    let report = testing::run_text(lenient.as_ref(), &[("a", &text(&swapped))]).unwrap();
    assert!(
        report[2].starts_with("sorted\tfalse: a at byte"),
        "{report:?}"
    );
}

#[test]
fn a_short_record_is_named_by_place() {
    let sort = harrow_sdk::batch_runtime(TeraSort);
    let error = testing::run_text(sort.as_ref(), &[("in", "0123456789abc\nshort\n")])
        .unwrap_err()
        .to_string();
    assert!(error.contains("in:14"), "{error}");
    assert!(error.contains("5 bytes"), "{error}");
}
