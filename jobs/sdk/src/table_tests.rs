//! Tests of `jobs/sdk/src/table.rs`.
use super::*;
use arrow::array::{Int8Array, Int64Array, StringArray, UInt32Array};
use arrow::datatypes::Field;

/// For keys of every kind, over two batches: each group's state sees
/// exactly the rows of its key, and `finish` encodes each group's key
/// as `encode` does.
#[test]
fn group_tables_agree_with_the_encoding_for_every_kind_of_key() {
    let strings = || {
        Arc::new(StringArray::from(vec![
            Some("b"),
            None,
            Some("a"),
            Some("b"),
            None,
            Some(""),
        ])) as ArrayRef
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "int8",
            Arc::new(Int8Array::from(vec![
                Some(-3),
                None,
                Some(7),
                Some(-3),
                None,
                Some(0),
            ])),
        ),
        (
            "uint32",
            Arc::new(UInt32Array::from(vec![
                4_000_000_000,
                1,
                4_000_000_000,
                2,
                1,
                0,
            ])),
        ),
        ("utf8", strings()),
        (
            "large_utf8",
            cast(&strings(), &DataType::LargeUtf8).unwrap(),
        ),
        ("utf8_view", cast(&strings(), &DataType::Utf8View).unwrap()),
        ("binary", cast(&strings(), &DataType::Binary).unwrap()),
        (
            "binary_view",
            cast(&strings(), &DataType::BinaryView).unwrap(),
        ),
        (
            "float",
            Arc::new(arrow::array::Float64Array::from(vec![
                Some(1.5),
                None,
                Some(-0.0),
                Some(1.5),
                None,
                Some(0.0),
            ])),
        ),
    ];
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.iter().map(|(_, a)| a.clone()).collect(),
    )
    .unwrap();
    let mut keys: Vec<Vec<String>> = columns
        .iter()
        .map(|(name, _)| vec![name.to_string()])
        .collect();
    keys.push(vec!["int8".into(), "utf8".into()]);
    for names in keys {
        let columns = KeyColumns::new(&schema, &names).unwrap();
        let mut table = GroupTable::<Vec<usize>>::new(columns.clone());
        for (offset, part) in [(0, batch.slice(0, 3)), (3, batch.slice(3, 3))] {
            table
                .update(&part, |rows, row| {
                    rows.push(offset + row);
                    Ok::<_, JobError>(())
                })
                .unwrap();
        }
        let groups = table.len();
        let (keys, rows) = table.finish().unwrap();
        assert_eq!((keys.len(), rows.len()), (groups, groups), "{names:?}");
        let encoded = columns.encode(&batch).unwrap();
        let mut seen: Vec<usize> = rows.concat();
        seen.sort();
        assert_eq!(seen, (0..batch.num_rows()).collect::<Vec<_>>(), "{names:?}");
        for (key, rows) in keys.iter().zip(&rows) {
            for &row in rows {
                assert_eq!(key, Some(encoded.value(row)), "{names:?}: row {row}");
            }
        }
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), groups, "{names:?}: a key in two groups");
    }
}

#[test]
fn keys_of_several_columns_with_nulls_survive_encoding_in_order() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("city", DataType::Utf8, true),
        Field::new("year", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![
                Some("b"),
                None,
                Some("a"),
                Some("a"),
            ])),
            Arc::new(Int64Array::from(vec![Some(1), Some(2), None, Some(-5)])),
        ],
    )
    .unwrap();
    let keys = KeyColumns::new(&schema, &["city".into(), "year".into()]).unwrap();
    let encoded: ArrayRef = Arc::new(keys.encode(&batch).unwrap());
    assert_eq!(keys.decode(&encoded).unwrap(), batch.columns());
    // Byte order is the rows' sort order, nulls first in each column:
    // (null, 2), (a, null), (a, -5), (b, 1).
    let mut order: Vec<usize> = (0..4).collect();
    let binary = encoded.as_any().downcast_ref::<BinaryArray>().unwrap();
    order.sort_by_key(|&i| binary.value(i).to_vec());
    assert_eq!(order, [1, 2, 3, 0]);
    let error = KeyColumns::new(&schema, &["nope".into()]).unwrap_err();
    assert!(
        error.to_string().contains("(it has: city, year)"),
        "{error}"
    );
}
