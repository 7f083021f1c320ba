//! Typed keys, values and output rows, and how each maps to an Arrow column.

use std::borrow::Borrow;
use std::hash::Hash;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder,
    Float64Array, Float64Builder, Int64Array, Int64Builder, StringArray, StringBuilder,
    UInt64Array, UInt64Builder,
};
use arrow::datatypes::DataType;

use crate::JobError;

/// A type a job can emit as a value (or output as a column): it knows its
/// Arrow type, how to append itself to a builder and read itself back.
pub trait Value: Clone + Default + Send + Sync + 'static {
    type Array: Array + 'static;
    type Builder: ArrayBuilder + Default;

    fn data_type() -> DataType;
    fn append(builder: &mut Self::Builder, value: &Self);
    fn get(array: &Self::Array, row: usize) -> Self;

    /// The typed array behind `array`, or an error naming `column`.
    fn downcast<'a>(array: &'a ArrayRef, column: &str) -> Result<&'a Self::Array, JobError> {
        array
            .as_any()
            .downcast_ref::<Self::Array>()
            .ok_or_else(|| JobError::ColumnType {
                column: column.to_string(),
                expected: Self::data_type(),
                found: array.data_type().clone(),
            })
    }

    fn finish(builder: &mut Self::Builder) -> ArrayRef {
        builder.finish()
    }
}

/// A type a job can emit as a key: hashable and comparable, and looked up
/// by a borrowed form (`&str` for `String`) so emitting an existing key
/// allocates nothing.
pub trait Key: Value + Hash + Eq + Borrow<Self::Borrowed> {
    type Borrowed: ?Sized + Hash + Eq;
    fn from_borrowed(borrowed: &Self::Borrowed) -> Self;
}

macro_rules! primitive_value {
    ($ty:ty, $array:ty, $builder:ty, $data_type:expr) => {
        impl Value for $ty {
            type Array = $array;
            type Builder = $builder;
            fn data_type() -> DataType {
                $data_type
            }
            fn append(builder: &mut Self::Builder, value: &Self) {
                builder.append_value(*value);
            }
            fn get(array: &Self::Array, row: usize) -> Self {
                array.value(row)
            }
        }
    };
}

macro_rules! primitive_key {
    ($ty:ty) => {
        impl Key for $ty {
            type Borrowed = $ty;
            fn from_borrowed(borrowed: &$ty) -> Self {
                *borrowed
            }
        }
    };
}

primitive_value!(i64, Int64Array, Int64Builder, DataType::Int64);
primitive_value!(u64, UInt64Array, UInt64Builder, DataType::UInt64);
primitive_value!(f64, Float64Array, Float64Builder, DataType::Float64);
primitive_value!(bool, BooleanArray, BooleanBuilder, DataType::Boolean);
primitive_key!(i64);
primitive_key!(u64);
primitive_key!(bool);

impl Value for String {
    type Array = StringArray;
    type Builder = StringBuilder;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn append(builder: &mut Self::Builder, value: &Self) {
        builder.append_value(value);
    }
    fn get(array: &Self::Array, row: usize) -> Self {
        array.value(row).to_string()
    }
}

impl Key for String {
    type Borrowed = str;
    fn from_borrowed(borrowed: &str) -> Self {
        borrowed.to_string()
    }
}

impl Value for Vec<u8> {
    type Array = BinaryArray;
    type Builder = BinaryBuilder;
    fn data_type() -> DataType {
        DataType::Binary
    }
    fn append(builder: &mut Self::Builder, value: &Self) {
        builder.append_value(value);
    }
    fn get(array: &Self::Array, row: usize) -> Self {
        array.value(row).to_vec()
    }
}

impl Key for Vec<u8> {
    type Borrowed = [u8];
    fn from_borrowed(borrowed: &[u8]) -> Self {
        borrowed.to_vec()
    }
}

/// An output row of a record-level job: a tuple of [`Value`]s, one Arrow
/// column each.
pub trait Row: Send + 'static {
    type Builders: Default + Send;
    fn data_types() -> Vec<DataType>;
    fn append(self, builders: &mut Self::Builders);
    fn finish(builders: &mut Self::Builders) -> Vec<ArrayRef>;
}

macro_rules! tuple_row {
    ($($name:ident $index:tt),+) => {
        impl<$($name: Value),+> Row for ($($name,)+) {
            type Builders = ($($name::Builder,)+);
            fn data_types() -> Vec<DataType> {
                vec![$($name::data_type()),+]
            }
            fn append(self, builders: &mut Self::Builders) {
                $($name::append(&mut builders.$index, &self.$index);)+
            }
            fn finish(builders: &mut Self::Builders) -> Vec<ArrayRef> {
                vec![$($name::finish(&mut builders.$index)),+]
            }
        }
    };
}

tuple_row!(A 0);
tuple_row!(A 0, B 1);
tuple_row!(A 0, B 1, C 2);
tuple_row!(A 0, B 1, C 2, D 3);
tuple_row!(A 0, B 1, C 2, D 3, E 4);
