//! Matching used by configuration rules (metric exclusions, sampling rules, SLO selectors):
//! X-Ray wildcards and attribute conditions.

use regex::Regex;
use serde::Deserialize;

use crate::model::{AttrValue, Span};

/// An AWS X-Ray style wildcard: `*` any run of characters, `?` exactly one, case-insensitive.
#[derive(Clone, Debug)]
pub struct Wildcard {
    pattern: Vec<char>,
}

impl Wildcard {
    pub fn new(pattern: &str) -> Self {
        Self { pattern: pattern.to_lowercase().chars().collect() }
    }

    /// Iterative glob matching with single-star backtracking: linear in practice, no recursion.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.to_lowercase().chars().collect();
        let p = &self.pattern;
        let (mut ti, mut pi) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while ti < text.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == text[ti]) {
                ti += 1;
                pi += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((star_p, star_t)) = star {
                pi = star_p + 1;
                ti = star_t + 1;
                star = Some((star_p, star_t + 1));
            } else {
                return false;
            }
        }
        while pi < p.len() && p[pi] == '*' {
            pi += 1;
        }
        pi == p.len()
    }
}

impl<'de> Deserialize<'de> for Wildcard {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Wildcard::new(&s))
    }
}

/// `{ key, equals | matches | regex | min | max | exists }`: a condition on one attribute.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeCondition {
    /// The attribute key (span attributes first, then resource attributes).
    pub key: String,
    /// Holds when the value, as text, equals this exactly.
    pub equals: Option<String>,
    /// Holds when the value, as text, matches this X-Ray wildcard.
    pub matches: Option<Wildcard>,
    /// Holds when the value, as text, matches this regular expression.
    #[serde(default, with = "regex_serde")]
    pub regex: Option<Regex>,
    /// Holds when the value is a number at least this.
    pub min: Option<f64>,
    /// Holds when the value is a number at most this.
    pub max: Option<f64>,
    /// Holds when the attribute is present (`true`) or absent (`false`).
    pub exists: Option<bool>,
}

mod regex_serde {
    use regex::Regex;
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Regex>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => Regex::new(&s).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

impl AttributeCondition {
    /// Whether exactly one test is given (checked by configuration validation).
    pub fn test_count(&self) -> usize {
        [
            self.equals.is_some(),
            self.matches.is_some(),
            self.regex.is_some(),
            self.min.is_some() || self.max.is_some(),
            self.exists.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }

    pub fn holds_for_value(&self, value: Option<&AttrValue>) -> bool {
        if let Some(exists) = self.exists {
            return value.is_some() == exists;
        }
        let Some(value) = value else { return false };
        if self.min.is_some() || self.max.is_some() {
            let Some(n) = value.as_f64() else { return false };
            return self.min.is_none_or(|m| n >= m) && self.max.is_none_or(|m| n <= m);
        }
        let Some(text) = value.as_text() else { return false };
        if let Some(equals) = &self.equals {
            return &text == equals;
        }
        if let Some(pattern) = &self.matches {
            return pattern.matches(&text);
        }
        if let Some(re) = &self.regex {
            return re.is_match(&text);
        }
        true
    }

    pub fn holds(&self, span: &Span) -> bool {
        self.holds_for_value(span.attribute(&self.key).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xray_wildcards() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("checkout*", "checkout-service", true),
            ("checkout*", "Checkout", true),
            ("CHECKOUT", "checkout", true),
            ("ch?ckout", "checkout", true),
            ("ch?ckout", "chckout", false),
            ("?", "", false),
            ("*-api", "orders-api", true),
            ("*-api", "orders-apis", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("ELB-HealthChecker*", "ELB-HealthChecker/2.0", true),
            ("", "", true),
            ("", "x", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(Wildcard::new(pattern).matches(text), expected, "{pattern:?} vs {text:?}");
        }
    }

    #[test]
    fn attribute_tests() {
        let cond: AttributeCondition = toml::from_str("key = \"k\"\nmin = 10\nmax = 20").unwrap();
        assert!(cond.holds_for_value(Some(&AttrValue::Int(15))));
        assert!(!cond.holds_for_value(Some(&AttrValue::Int(25))));
        assert!(!cond.holds_for_value(None));
        let cond: AttributeCondition = toml::from_str("key = \"k\"\nexists = false").unwrap();
        assert!(cond.holds_for_value(None));
        let cond: AttributeCondition = toml::from_str("key = \"k\"\nregex = \"^GET /a.*$\"").unwrap();
        assert!(cond.holds_for_value(Some(&AttrValue::Str("GET /abc".into()))));
        assert!(toml::from_str::<AttributeCondition>("key = \"k\"\nregex = \"(\"").is_err());
    }
}
