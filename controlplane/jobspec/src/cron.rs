//! Syntax check of cron expressions as Nomad reads them (hashicorp/cronexpr): five fields
//! (minute hour day-of-month month day-of-week), six (… year) or seven (second … year), or a
//! shortcut such as `@daily`. Each field is a comma list of `*`, `?`, values, ranges `a-b` and
//! steps `/n`; months and weekdays may be names; day-of-month takes `L` and `W`, day-of-week
//! `L` and `#`.

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

const SHORTCUTS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Checks a cron expression; the error says which field is wrong and why.
pub(crate) fn check(expr: &str) -> Result<(), String> {
    let e = expr.trim();
    if e.starts_with('@') {
        return if SHORTCUTS.contains(&e.to_ascii_lowercase().as_str()) {
            Ok(())
        } else {
            Err(format!(
                "unknown shortcut; use one of {}",
                SHORTCUTS.join(" ")
            ))
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
    for (text, spec) in fields.iter().zip(specs) {
        check_field(text, spec).map_err(|m| format!("{} field {text:?}: {m}", spec.name))?;
    }
    Ok(())
}

fn check_field(text: &str, spec: &FieldSpec) -> Result<(), String> {
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty list item".into());
        }
        let lower = item.to_ascii_lowercase();
        let is_dom = std::ptr::eq(spec, &DOM);
        let is_dow = std::ptr::eq(spec, &DOW);
        if (is_dom || is_dow) && (lower == "?" || lower == "l") {
            continue;
        }
        if is_dom
            && (lower == "lw"
                || lower
                    .strip_suffix('w')
                    .is_some_and(|d| value(d, spec).is_ok()))
        {
            continue;
        }
        if is_dow {
            if let Some(d) = lower.strip_suffix('l') {
                value(d, spec)?;
                continue;
            }
            if let Some((d, n)) = lower.split_once('#') {
                value(d, spec)?;
                match n.parse::<u32>() {
                    Ok(1..=5) => continue,
                    _ => return Err(format!("{item:?}: the week after '#' must be 1-5")),
                }
            }
        }
        let (range, step) = match lower.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (lower.as_str(), None),
        };
        if let Some(s) = step {
            match s.parse::<u32>() {
                Ok(n) if n > 0 => {}
                _ => {
                    return Err(format!(
                        "{item:?}: the step after '/' must be a positive number"
                    ))
                }
            }
        }
        if range == "*" || (range == "?" && (is_dom || is_dow)) {
            continue;
        }
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (value(a, spec)?, value(b, spec)?);
                if a > b && !is_dow {
                    return Err(format!("{item:?}: the range runs backwards"));
                }
            }
            None => {
                value(range, spec)?;
            }
        }
    }
    Ok(())
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
