//! Writes deterministic sample readings for the max-temperature job:
//! one CSV file per year, `station,date,temperature_c`, with a header.
//!
//! `generate-readings DIR [STATIONS] [YEARS] [READINGS_PER_STATION_YEAR]`
//! (defaults 20 stations, 5 years from 2020, 60 readings).

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: generate-readings DIR [STATIONS] [YEARS] [READINGS_PER_STATION_YEAR]");
        std::process::exit(2);
    };
    let number = |index: usize, default: u64| -> u64 {
        args.get(index).map_or(default, |text| {
            text.parse().unwrap_or_else(|_| {
                eprintln!("{text:?} is not a number");
                std::process::exit(2)
            })
        })
    };
    let (stations, years, readings) = (number(1, 20), number(2, 5), number(3, 60));
    std::fs::create_dir_all(&dir)?;
    // xorshift64*: deterministic, good enough for sample data.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for year in 2020..2020 + years {
        let mut text = String::from("station,date,temperature_c\n");
        for station in 0..stations {
            let climate = (station % 7) as f64 * 3.0;
            for _ in 0..readings {
                let day = next() % 365;
                let (month, day) = (day / 31 + 1, day % 28 + 1);
                let season = -((month as f64 - 7.0) / 6.0 * std::f64::consts::PI).cos();
                let noise = (next() % 1000) as f64 / 100.0 - 5.0;
                let celsius = climate + 12.0 * season + noise;
                let _ = writeln!(
                    text,
                    "ST{station:05},{year}-{month:02}-{day:02},{celsius:.1}"
                );
            }
        }
        std::fs::write(dir.join(format!("readings-{year}.csv")), text)?;
    }
    Ok(())
}
