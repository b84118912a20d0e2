//! Times and sizes as people read them in text output; JSON keeps the exact numbers.

use chrono::{DateTime, Local, TimeZone};

/// Microseconds since the epoch as local time (`Sat 2026-11-28 07:05:00 +01:00`),
/// in the zone `TZ` or `/etc/localtime` names; `-` for 0, which means unknown.
pub fn time(micros: u64) -> String {
    time_in(micros, &Local)
}

/// [`time`] in the zone `tz`.
pub fn time_in<Tz: TimeZone>(micros: u64, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if micros == 0 {
        return "-".to_owned();
    }
    match i64::try_from(micros).ok().and_then(DateTime::from_timestamp_micros) {
        Some(utc) => utc.with_timezone(tz).format("%a %Y-%m-%d %H:%M:%S %:z").to_string(),
        None => format!("{micros} µs after the epoch"),
    }
}

/// The current local time with milliseconds, for lines that happen now (`monitor`).
pub fn now() -> String {
    Local::now().format("%Y-%m-%d %H:%M:%S%.3f %:z").to_string()
}

/// Bytes in binary units, one decimal place from KiB on: `512 B`, `4.0 KiB`, `1.5 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use chrono::FixedOffset;

    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(4096), "4.0 KiB");
        assert_eq!(size(1536 * 1024), "1.5 MiB");
        assert_eq!(size(8 << 30), "8.0 GiB");
        assert_eq!(size(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn times_are_shown_in_the_zone_asked_for() {
        // 2026-11-28 06:36:00 UTC.
        let micros = 1_795_847_760_000_000;
        let utc = FixedOffset::east_opt(0).expect("offset");
        assert_eq!(time_in(micros, &utc), "Sat 2026-11-28 06:36:00 +00:00");
        let tokyo = FixedOffset::east_opt(9 * 3600).expect("offset");
        assert_eq!(time_in(micros, &tokyo), "Sat 2026-11-28 15:36:00 +09:00");
        assert_eq!(time(0), "-");
    }
}
