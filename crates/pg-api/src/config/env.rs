//! `${VAR}` and `${VAR:-default}` in a configuration file, replaced from
//! the environment before it is parsed.

use super::ConfigError;

/// Replaces `${NAME}` with `env(NAME)` and `${NAME:-default}` with it or,
/// when unset or empty, `default`; `$$` is a literal `$`, and a `$` not
/// followed by `{` or `$` stays as it is. Lines that are whole comments
/// (first non-blank character `#`) are left alone. The value is inserted as
/// text: quote the placeholder in the YAML if the value may hold
/// characters YAML reads specially. An unset variable without a default,
/// or an unterminated `${`, is an error naming it.
pub fn expand_env(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (number, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let at =
            |message: String| ConfigError::new(Some(format!("line {}", number + 1)), None, message);
        let mut rest = line;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let end = body
                    .find('}')
                    .ok_or_else(|| at("unterminated ${ (write $$ for a literal $)".into()))?;
                let (name, default) = match body[..end].split_once(":-") {
                    Some((name, default)) => (name, Some(default)),
                    None => (&body[..end], None),
                };
                let valid = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(at(format!("${{{name}}} is not a variable name")));
                }
                match (
                    env(name).filter(|v| !v.is_empty() || default.is_none()),
                    default,
                ) {
                    (Some(value), _) => out.push_str(&value),
                    (None, Some(default)) => out.push_str(default),
                    (None, None) => {
                        return Err(at(format!(
                            "environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                        )));
                    }
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
    }
    Ok(out)
}
