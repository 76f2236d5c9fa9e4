//! Text that came from elsewhere (a remote's answers, a token's claims) is shown with its
//! control characters escaped, so that it cannot move the cursor, clear the screen, retitle
//! the terminal or hide what follows.

use std::borrow::Cow;

/// Whether `c` is a control character a terminal may act on: C0 (including ESC), DEL, C1.
fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// `text` with every C0, DEL and C1 control character written as a visible escape (`\u{1b}`,
/// `\n`, `\t`, ...); unchanged (and not copied) when it has none.
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_control(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Input for a message: its first `max` characters, with control characters, quotes and
/// backslashes escaped as `{:?}` writes them.
pub fn escaped_head(input: &str, max: usize) -> String {
    input
        .chars()
        .take(max)
        .flat_map(char::escape_debug)
        .collect()
}

/// [`escaped_head`], followed by `…` when `input` is longer than `max` characters.
pub fn excerpt(input: &str, max: usize) -> String {
    let mut out = escaped_head(input, max);
    if input.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::safe;

    #[test]
    fn escapes_c0_esc_del_and_c1() {
        assert_eq!(safe("ci"), "ci");
        assert_eq!(safe("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(safe("x\ny\rz\t"), "x\\ny\\rz\\t");
        assert_eq!(safe("\x7f\u{9b}31m"), "\\u{7f}\\u{9b}31m");
        assert_eq!(safe("é ü 日本"), "é ü 日本");
        assert!(!safe("\x07\x1b]0;title\x07").chars().any(|c| c.is_control()));
    }
}
