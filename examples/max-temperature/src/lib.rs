//! A job as a user writes it, outside the engine: the highest temperature
//! per weather station per year, over CSV readings
//! (`station,date,temperature_c`, e.g. `USW00094728,2024-07-15,31.7`, with
//! a header line), read as text lines. Lines that do not parse are counted
//! in the `malformed_readings` counter and logged, not fatal.
//!
//! Built as a plugin (`cargo build -p harrow-example-max-temperature
//! --release` → `target/release/libmax_temperature.so`) and run with
//! `harrow run --plugin target/release/libmax_temperature.so max-temperature
//! --input-format text --input readings/ --output out`. Output:
//! `station<TAB>year<TAB>max` (`--arg unit=fahrenheit` converts).

use harrow_sdk::{ArgSpec, Emitter, Job, JobArgs, JobDefinition, JobError, Line, Output};

pub const DEFINITION: JobDefinition = JobDefinition {
    name: "max-temperature",
    summary: "highest temperature per station per year: station<TAB>year<TAB>max",
    args: &[ArgSpec {
        name: "unit",
        help: "celsius (the readings' unit, default) or fahrenheit",
        required: false,
    }],
    create: |args: &JobArgs| {
        let fahrenheit = match args.raw("unit").unwrap_or("celsius") {
            "celsius" => false,
            "fahrenheit" => true,
            other => {
                return Err(JobError::InvalidArgument {
                    name: "unit".to_string(),
                    value: other.to_string(),
                    reason: "expected celsius or fahrenheit".to_string(),
                });
            }
        };
        Ok(harrow_sdk::record_runtime(MaxTemperature { fahrenheit }))
    },
};

harrow_sdk::export_plugin!(DEFINITION);

pub struct MaxTemperature {
    fahrenheit: bool,
}

/// One reading, parsed.
#[derive(Debug, PartialEq)]
pub struct Reading<'a> {
    pub station: &'a str,
    pub year: i64,
    pub celsius: f64,
}

/// Parses `station,YYYY-MM-DD,temperature`; `None` for anything else.
pub fn parse_reading(line: &str) -> Option<Reading<'_>> {
    let mut fields = line.trim_end().split(',');
    let (station, date, celsius) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() || station.is_empty() || station.contains('\t') {
        return None;
    }
    let year = date.get(..4)?.parse().ok()?;
    let celsius: f64 = celsius.parse().ok()?;
    celsius.is_finite().then_some(Reading {
        station,
        year,
        celsius,
    })
}

impl Job for MaxTemperature {
    /// `station<TAB>year`.
    type Key = String;
    /// The highest reading, in Celsius.
    type Value = f64;
    type Output = (String, i64, f64);
    const OUTPUT_COLUMNS: &'static [&'static str] = &["station", "year", "max"];
    const COMBINE: bool = true;

    fn map(&self, line: &Line<'_>, emit: &mut Emitter<'_, Self>) -> Result<(), JobError> {
        if line.offset == 0 && line.text.starts_with("station,") {
            return Ok(());
        }
        match parse_reading(line.text) {
            Some(reading) => emit.emit(
                &format!("{}\t{}", reading.station, reading.year),
                reading.celsius,
            ),
            None => {
                emit.counter("malformed_readings").add(1);
                harrow_sdk::log::warn!(
                    "skipping malformed reading at {}:{}: {:?}",
                    line.file,
                    line.offset,
                    line.text
                );
            }
        }
        Ok(())
    }

    fn combine(&self, _key: &String, values: &mut dyn Iterator<Item = f64>) -> f64 {
        values.fold(f64::NEG_INFINITY, f64::max)
    }

    fn reduce(
        &self,
        key: &String,
        values: &mut dyn Iterator<Item = f64>,
        out: &mut Output<'_, (String, i64, f64)>,
    ) -> Result<(), JobError> {
        let (station, year) = key
            .split_once('\t')
            .and_then(|(station, year)| Some((station, year.parse().ok()?)))
            .ok_or_else(|| JobError::job(format!("malformed key {key:?}")))?;
        let max = self.combine(key, values);
        let max = if self.fahrenheit {
            max * 9.0 / 5.0 + 32.0
        } else {
            max
        };
        out.counter("station_years").add(1);
        out.push((station.to_string(), year, max));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harrow_sdk::testing::{run_local, text_batch};

    #[test]
    fn parses_readings_and_refuses_the_rest() {
        assert_eq!(
            parse_reading("USW00094728,2024-07-15,31.7"),
            Some(Reading {
                station: "USW00094728",
                year: 2024,
                celsius: 31.7
            })
        );
        for bad in [
            "",
            "a,b",
            "X,20x4-01-01,3",
            "X,2024-01-01,warm",
            "X,2024-01-01,1,2",
            ",2024-01-01,1",
        ] {
            assert_eq!(parse_reading(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn highest_reading_per_station_year() {
        let csv = "station,date,temperature_c\n\
                   A,2020-01-01,-3.5\nA,2020-07-01,30.25\nB,2020-07-01,12\n\
                   A,2021-07-01,28\noops\nB,2020-08-01,14.5\n";
        let job = DEFINITION.instantiate(&JobArgs::default()).unwrap();
        let run = run_local(job.as_ref(), &[text_batch("r.csv", csv).unwrap()]).unwrap();
        assert_eq!(
            run.lines().unwrap(),
            ["A\t2020\t30.25", "A\t2021\t28.0", "B\t2020\t14.5"]
        );
        assert_eq!(run.counters.get("malformed_readings"), 1);
        assert_eq!(run.counters.get("station_years"), 3);
        let fahrenheit = JobArgs::parse_pairs(["unit=fahrenheit"]).unwrap();
        let job = DEFINITION.instantiate(&fahrenheit).unwrap();
        let run = run_local(
            job.as_ref(),
            &[text_batch("r.csv", "A,2020-01-01,100\n").unwrap()],
        )
        .unwrap();
        assert_eq!(run.lines().unwrap(), ["A\t2020\t212.0"]);
        let kelvin = JobArgs::parse_pairs(["unit=kelvin"]).unwrap();
        assert!(DEFINITION.instantiate(&kelvin).is_err());
    }
}
