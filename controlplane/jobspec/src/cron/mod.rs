//! Cron expressions as Nomad reads them (hashicorp/cronexpr): five fields
//! (minute hour day-of-month month day-of-week), six (… year) or seven (second … year), or a
//! shortcut such as `@daily`. Each field is a comma list of `*`, `?`, values, ranges `a-b` and
//! steps `/n`; months and weekdays may be names; day-of-month takes `L` and `W`, day-of-week
//! `L` and `#`.
//!
//! The jobspec checks them; [`next_after`] computes a periodic job's next launch, for the
//! scheduler.

mod next;

use std::collections::BTreeSet;

pub use next::next_after;

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: FieldSpec = FieldSpec {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: FieldSpec = FieldSpec {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};
const YEAR: FieldSpec = FieldSpec {
    name: "year",
    min: 1970,
    max: 2099,
    names: &[],
};

/// The shortcuts and the five fields each stands for.
const SHORTCUTS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// Checks a cron expression; the error says which field is wrong and why.
pub(crate) fn check(expr: &str) -> Result<(), String> {
    parse(expr).map(|_| ())
}

/// Reads a cron expression into the values each field allows.
pub(crate) fn parse(expr: &str) -> Result<Schedule, String> {
    let e = expr.trim();
    if e.starts_with('@') {
        let lower = e.to_ascii_lowercase();
        return match SHORTCUTS.iter().find(|(name, _)| *name == lower) {
            Some((_, fields)) => parse(fields),
            None => Err(format!(
                "unknown shortcut; use one of {}",
                SHORTCUTS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
        };
    }
    let fields: Vec<&str> = e.split_whitespace().collect();
    let specs: &[&FieldSpec] = match fields.len() {
        5 => &[&MINUTE, &HOUR, &DOM, &MONTH, &DOW],
        6 => &[&MINUTE, &HOUR, &DOM, &MONTH, &DOW, &YEAR],
        7 => &[&SECOND, &MINUTE, &HOUR, &DOM, &MONTH, &DOW, &YEAR],
        n => {
            return Err(format!(
                "it has {n} fields; write 5 (minute hour day-of-month month day-of-week), 6 (… year) or 7 (second … year), like \"*/15 * * * *\""
            ))
        }
    };
    let mut parsed = Vec::with_capacity(7);
    for (text, spec) in fields.iter().zip(specs) {
        parsed.push(
            parse_field(text, spec).map_err(|m| format!("{} field {text:?}: {m}", spec.name))?,
        );
    }
    // Without a second field the second is 0; without a year field every year matches.
    if parsed.len() < 7 {
        parsed.insert(0, Field::only(0));
    }
    if parsed.len() < 7 {
        parsed.push(Field::every(&YEAR));
    }
    let [second, minute, hour, dom, month, dow, year]: [Field; 7] = parsed
        .try_into()
        .map_err(|_| "internal error: not 7 fields".to_string())?;
    Ok(Schedule {
        second,
        minute,
        hour,
        dom,
        month,
        dow,
        year,
    })
}

/// What one field of a cron expression allows.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Field {
    /// Plain values: `5`, `1-5`, `*/15`, names. Day of week 7 is stored as 0 (Sunday).
    values: BTreeSet<u32>,
    /// False when the field is `*` or `?`: for the day fields, cron then matches on the
    /// other one alone.
    restricted: bool,
    /// Day of month `L`: the last day of the month.
    last: bool,
    /// Day of month `LW`: the last weekday (Monday to Friday) of the month.
    last_weekday: bool,
    /// Day of month `15W`: the weekday nearest the 15th, within the month.
    nearest_weekday: BTreeSet<u32>,
    /// Day of week `5L`: the last Friday of the month.
    last_of_month: BTreeSet<u32>,
    /// Day of week `1#2`: (weekday, n) for the n-th Monday of the month.
    nth_of_month: BTreeSet<(u32, u32)>,
}

impl Field {
    fn only(v: u32) -> Field {
        Field {
            values: BTreeSet::from([v]),
            restricted: true,
            ..Field::default()
        }
    }

    fn every(spec: &FieldSpec) -> Field {
        Field {
            values: (spec.min..=spec.max).collect(),
            ..Field::default()
        }
    }

    fn add_range(&mut self, spec: &FieldSpec, from: u32, to: u32, step: u32) {
        let is_dow = std::ptr::eq(spec, &DOW);
        // A day-of-week range may wrap around the week (`FRI-MON`); 7 is Sunday as 0 is.
        let end = if is_dow && from > to { to + 7 } else { to };
        let mut v = from;
        while v <= end {
            self.values.insert(if is_dow { v % 7 } else { v });
            v += step;
        }
    }
}

/// A parsed cron expression, all seven fields (Nomad's cronexpr defaults: second 0, any year).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Schedule {
    second: Field,
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
    year: Field,
}

fn parse_field(text: &str, spec: &FieldSpec) -> Result<Field, String> {
    let mut field = Field::default();
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty list item".into());
        }
        parse_item(item, spec, &mut field)?;
    }
    Ok(field)
}

/// One comma-separated item of a field: a day form (`L`, `LW`, `15W`, `5L`, `1#2`), or
/// `*`/`?`/a value/a range, with an optional step.
fn parse_item(item: &str, spec: &FieldSpec, field: &mut Field) -> Result<(), String> {
    let lower = item.to_ascii_lowercase();
    if day_form(item, &lower, spec, field)? {
        field.restricted = true;
        return Ok(());
    }
    let is_day = std::ptr::eq(spec, &DOM) || std::ptr::eq(spec, &DOW);
    let (range, step) = match lower.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (lower.as_str(), None),
    };
    let step = match step.map(str::parse::<u32>) {
        None => 1,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            return Err(format!(
                "{item:?}: the step after '/' must be a positive number"
            ))
        }
    };
    if range == "*" || (range == "?" && is_day) {
        field.add_range(spec, spec.min, spec.max, step);
        field.restricted |= step > 1;
        return Ok(());
    }
    field.restricted = true;
    match range.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (value(a, spec)?, value(b, spec)?);
            if a > b && !std::ptr::eq(spec, &DOW) {
                return Err(format!("{item:?}: the range runs backwards"));
            }
            field.add_range(spec, a, b, step);
        }
        // `5/15` runs from 5 to the end of the field, as cronexpr reads it.
        None if step > 1 => field.add_range(spec, value(range, spec)?, spec.max, step),
        None => field.add_range(spec, value(range, spec)?, value(range, spec)?, 1),
    }
    Ok(())
}

/// The day-of-month and day-of-week forms that are not values: true when `item` was one.
fn day_form(item: &str, lower: &str, spec: &FieldSpec, field: &mut Field) -> Result<bool, String> {
    let is_dom = std::ptr::eq(spec, &DOM);
    let is_dow = std::ptr::eq(spec, &DOW);
    if is_dom && lower == "l" {
        field.last = true;
    } else if is_dom && lower == "lw" {
        field.last_weekday = true;
    } else if let Some(d) = lower.strip_suffix('w').filter(|_| is_dom) {
        match value(d, spec) {
            Ok(d) => field.nearest_weekday.insert(d),
            Err(_) => return Ok(false),
        };
    } else if is_dow && lower == "l" {
        // A lone L in the day of week is its last day, Saturday (Quartz's reading).
        field.values.insert(6);
    } else if let Some(d) = lower.strip_suffix('l').filter(|_| is_dow) {
        field.last_of_month.insert(value(d, spec)? % 7);
    } else if let Some((d, n)) = lower.split_once('#').filter(|_| is_dow) {
        let d = value(d, spec)? % 7;
        match n.parse::<u32>() {
            Ok(n @ 1..=5) => field.nth_of_month.insert((d, n)),
            _ => return Err(format!("{item:?}: the week after '#' must be 1-5")),
        };
    } else {
        return Ok(false);
    }
    Ok(true)
}

fn value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    if let Some(i) = spec.names.iter().position(|n| *n == text) {
        return Ok(spec.min + i as u32);
    }
    match text.parse::<u32>() {
        Ok(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is outside {}-{}", spec.min, spec.max)),
        Err(_) => Err(format!(
            "{text:?} is not a number{}",
            if spec.names.is_empty() {
                ""
            } else {
                " or a name"
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nomad_cron_forms_are_accepted() {
        for ok in [
            "*/15 * * * *",
            "*/15 * * * * *",
            "0 */5 * * * * *",
            "@daily",
            "0 9 * * MON-FRI",
            "30 2 L * ?",
            "0 0 15W * *",
            "0 12 * * 5L",
            "0 12 * * 1#2",
            "0,30 8-18/2 1-15 jan,jul *",
        ] {
            assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
        }
    }

    #[test]
    fn malformed_crons_name_the_field() {
        let e = check("* * * *").unwrap_err();
        assert!(e.contains("4 fields"), "{e}");
        let e = check("61 * * * *").unwrap_err();
        assert!(e.contains("minute") && e.contains("0-59"), "{e}");
        assert!(check("* * * FOO *").unwrap_err().contains("month"));
        assert!(check("*/0 * * * *").unwrap_err().contains("step"));
        assert!(check("@every 5m").is_err());
    }
}
