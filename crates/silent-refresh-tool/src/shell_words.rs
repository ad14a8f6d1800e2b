//! Splits a command line into words as a POSIX shell would, for `--browser-command`:
//! blanks separate words; `'…'` keeps everything; `"…"` keeps everything but `\"`,
//! `\\`, `\$`, `` \` `` and a backslash-newline, which it unescapes; a backslash
//! outside quotes keeps the next character. Nothing is expanded (no variables, globs
//! or `~`), and nothing is run.

/// The words of `line`.
///
/// # Errors
///
/// An unclosed quote, or a backslash at the very end.
pub fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if let Some(done) = word.take() {
                    words.push(done);
                }
            }
            '\'' => {
                let word = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a single quote (') is not closed".to_owned()),
                    }
                }
            }
            '"' => {
                let word = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('\n') => {}
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("a double quote (\") is not closed".to_owned()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("a double quote (\") is not closed".to_owned()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("the command ends with a backslash".to_owned()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split;

    fn words(line: &str) -> Vec<String> {
        split(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn splits_as_a_shell_does() {
        assert_eq!(words("xdg-open"), ["xdg-open"]);
        assert_eq!(words("  firefox   --new-tab "), ["firefox", "--new-tab"]);
        assert_eq!(
            words("'/Applications/Google Chrome.app/x' --incognito"),
            ["/Applications/Google Chrome.app/x", "--incognito"]
        );
        assert_eq!(
            words(r#"sh -c "exec \"\$BROWSER\" \"\$1\"" sh"#),
            ["sh", "-c", r#"exec "$BROWSER" "$1""#, "sh"]
        );
        assert_eq!(words(r"my\ browser a\\b"), ["my browser", r"a\b"]);
        assert_eq!(words(r#""a\nb" 'it''s'"#), [r"a\nb", "its"]);
        assert_eq!(words(r#"""  ''"#), ["", ""]);
        assert_eq!(words("a\\\nb"), ["ab"]);
        assert!(words("").is_empty());
        assert!(words(" \t ").is_empty());
    }

    #[test]
    fn unclosed_quotes_are_refused() {
        for line in ["'open", "\"open", "open\\", "\"a\\"] {
            assert!(split(line).is_err(), "{line}");
        }
    }
}
