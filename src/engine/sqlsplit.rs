//! Split a SQL script into statements, so a failure can name the statement that failed and a
//! dry run can list them. Understands quotes, comments, PostgreSQL dollar quoting and SQLite
//! `CREATE TRIGGER ... BEGIN ... END;` bodies.

pub fn split_statements(sql: &str) -> Vec<String> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut begin_depth = 0usize;
    let mut word = String::new();
    let mut in_trigger = false;
    let mut first_words: Vec<String> = Vec::new();

    let flush_word =
        |word: &mut String, begin_depth: &mut usize, in_trigger: &mut bool, first_words: &mut Vec<String>| {
            if word.is_empty() {
                return;
            }
            let w = word.to_ascii_uppercase();
            if first_words.len() < 4 {
                first_words.push(w.clone());
                if first_words.len() >= 2 && first_words.iter().any(|x| x == "TRIGGER") && first_words[0] == "CREATE" {
                    *in_trigger = true;
                }
            }
            if *in_trigger {
                if w == "BEGIN" || w == "CASE" {
                    *begin_depth += 1;
                } else if w == "END" && *begin_depth > 0 {
                    *begin_depth -= 1;
                }
            }
            word.clear();
        };

    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\'' | b'"' | b'`' => {
                flush_word(&mut word, &mut begin_depth, &mut in_trigger, &mut first_words);
                let q = c;
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == q {
                        if i + 1 < bytes.len() && bytes[i + 1] == q {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                flush_word(&mut word, &mut begin_depth, &mut in_trigger, &mut first_words);
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                flush_word(&mut word, &mut begin_depth, &mut in_trigger, &mut first_words);
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'$' => {
                flush_word(&mut word, &mut begin_depth, &mut in_trigger, &mut first_words);
                // $tag$ ... $tag$
                let mut j = i + 1;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                if j < bytes.len() && bytes[j] == b'$' && !bytes[i + 1..j].first().is_some_and(|b| b.is_ascii_digit()) {
                    let tag = &sql[i..=j];
                    match sql[j + 1..].find(tag) {
                        Some(end) => i = j + 1 + end + tag.len(),
                        None => i = bytes.len(),
                    }
                } else {
                    i += 1;
                }
            }
            b';' => {
                flush_word(&mut word, &mut begin_depth, &mut in_trigger, &mut first_words);
                if begin_depth == 0 {
                    push_stmt(&mut out, &sql[start..i]);
                    start = i + 1;
                    in_trigger = false;
                    first_words.clear();
                }
                i += 1;
            }
            _ => {
                if c.is_ascii_alphanumeric() || c == b'_' {
                    word.push(c as char);
                } else {
                    flush_word(&mut word, &mut begin_depth, &mut in_trigger, &mut first_words);
                }
                i += 1;
            }
        }
    }
    if start < sql.len() {
        push_stmt(&mut out, &sql[start..]);
    }
    out
}

fn push_stmt(out: &mut Vec<String>, s: &str) {
    let t = s.trim();
    if t.is_empty() {
        return;
    }
    // a piece made only of comments is not a statement
    let without_comments: String = t
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    if without_comments.trim().is_empty() {
        return;
    }
    out.push(t.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_plain_statements_and_ignores_comments() {
        let s = split_statements(
            "-- head\nCREATE TABLE a (x TEXT DEFAULT ';');\n/* ; */ INSERT INTO a VALUES ('it''s;');\n-- tail only\n",
        );
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[1].contains("it''s;"));
    }

    #[test]
    fn keeps_trigger_and_dollar_bodies_whole() {
        let s = split_statements(
            "CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE a SET x = 1; DELETE FROM b; END;\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\nSELECT $1;",
        );
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(s[0].ends_with("END"));
        assert!(s[1].contains("SELECT 1;"));
    }
}
