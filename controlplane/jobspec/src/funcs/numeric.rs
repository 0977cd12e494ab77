//! Numeric functions: `abs`, `ceil`, `floor`, `log`, `max`, `min`, `parseint`, `pow`,
//! `signum`. Integers stay integers where the result is whole, as in cty.

use super::{Args, R};
use crate::value::{Number, Value};

pub(super) fn abs(a: Args<'_>) -> R {
    num1(a.get(0)?, f64::abs)
}

pub(super) fn ceil(a: Args<'_>) -> R {
    num1(a.get(0)?, f64::ceil)
}

pub(super) fn floor(a: Args<'_>) -> R {
    num1(a.get(0)?, f64::floor)
}

pub(super) fn signum(a: Args<'_>) -> R {
    num1(a.get(0)?, |x| {
        if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        }
    })
}

pub(super) fn log(a: Args<'_>) -> R {
    let (x, base) = (a.num(0)?, a.num(1)?);
    finite(x.ln() / base.ln())
}

pub(super) fn pow(a: Args<'_>) -> R {
    finite(a.num(0)?.powf(a.num(1)?))
}

pub(super) fn max(a: Args<'_>) -> R {
    best(&a, |candidate, best| candidate > best)
}

pub(super) fn min(a: Args<'_>) -> R {
    best(&a, |candidate, best| candidate < best)
}

/// The argument `better` prefers over every other (the first of equals).
fn best(a: &Args<'_>, better: fn(f64, f64) -> bool) -> R {
    let mut best: Option<Number> = None;
    for (i, v) in a.rest(0).iter().enumerate() {
        let n = v
            .to_number()
            .map_err(|m| format!("argument {}: {m}", i + 1))?;
        best = Some(match best {
            Some(b) if !better(n.as_f64(), b.as_f64()) => b,
            _ => n,
        });
    }
    Ok(Value::Number(best.unwrap_or(Number::Int(0))))
}

pub(super) fn parseint(a: Args<'_>) -> R {
    let s = a.str(0)?;
    let base = a.int(1)?;
    if !(2..=62).contains(&base) {
        return Err(format!("base must be between 2 and 62 (got {base})"));
    }
    u32::try_from(base)
        .ok()
        .and_then(|b| parse_radix(&s, b))
        .map(Value::int)
        .ok_or_else(|| format!("{s:?} is not a base-{base} integer"))
}

/// An integer in base 2 to 62. Up to 36, letters are digits in either case (as
/// `from_str_radix` reads them, which panics above 36); above, `a`–`z` are 10–35 and `A`–`Z`
/// are 36–61, as Go's `big.Int.SetString` (behind Terraform's `parseint`) reads them.
fn parse_radix(s: &str, base: u32) -> Option<i64> {
    if base <= 36 {
        return i64::from_str_radix(s, base).ok();
    }
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for c in digits.chars() {
        let d = match c {
            '0'..='9' => u32::from(c) - u32::from('0'),
            'a'..='z' => u32::from(c) - u32::from('a') + 10,
            'A'..='Z' => u32::from(c) - u32::from('A') + 36,
            _ => return None,
        };
        if d >= base {
            return None;
        }
        n = n.checked_mul(i64::from(base))?.checked_add(i64::from(d))?;
    }
    Some(if negative { -n } else { n })
}

/// Applies `f`; an integer stays an integer when `f` keeps it whole.
fn num1(v: &Value, f: impl Fn(f64) -> f64) -> R {
    match v.to_number()? {
        Number::Int(i) if f(i as f64) == i as f64 => {
            Ok(Value::Number(Number::from_f64(f(i as f64))))
        }
        n => finite(f(n.as_f64())),
    }
}

fn finite(x: f64) -> R {
    if x.is_finite() {
        Ok(Value::Number(Number::from_f64(x)))
    } else {
        Err("the result is not a finite number".into())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{i, run, s};
    use super::*;

    #[test]
    fn numeric_functions() {
        assert_eq!(run("abs", vec![i(-3)]).unwrap(), i(3));
        assert_eq!(
            run("ceil", vec![Value::Number(Number::Float(1.2))]).unwrap(),
            i(2)
        );
        assert_eq!(
            run("floor", vec![Value::Number(Number::Float(1.8))]).unwrap(),
            i(1)
        );
        assert_eq!(run("signum", vec![i(-9)]).unwrap(), i(-1));
        assert_eq!(run("log", vec![i(8), i(2)]).unwrap(), i(3));
        assert_eq!(run("pow", vec![i(2), i(10)]).unwrap(), i(1024));
        assert_eq!(run("max", vec![i(1), i(7), i(3)]).unwrap(), i(7));
        assert_eq!(run("min", vec![i(1), i(7), i(3)]).unwrap(), i(1));
        assert_eq!(run("parseint", vec![s("ff"), i(16)]).unwrap(), i(255));
        assert!(run("parseint", vec![s("zz"), i(10)]).is_err());
        assert_eq!(run("parseint", vec![s("Z"), i(62)]).unwrap(), i(61));
        assert_eq!(run("parseint", vec![s("-10"), i(40)]).unwrap(), i(-40));
        assert!(run("parseint", vec![s("B"), i(37)]).is_err());
        assert!(run("max", vec![]).is_err());
    }
}
