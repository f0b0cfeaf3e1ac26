//! The `email` rule's notion of a plausible address: `local@domain.tld`, no spaces, checked
//! by hand so the rule needs no regex and no allocation.

pub(super) fn is_email(s: &str) -> bool {
    const LOCAL_SYMBOLS: &str = "!#$%&'*+/=?^_`{|}~.-";
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| c.is_alphanumeric() || LOCAL_SYMBOLS.contains(c));
    if !local_ok || domain.len() > 253 {
        return false;
    }
    let mut labels = 0;
    let mut last = "";
    for label in domain.split('.') {
        let label_ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-');
        if !label_ok {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2 && !last.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use crate::engine::validate::Rule;
    use crate::engine::validate::testing::{fails, passes, text, validator};

    #[test]
    fn email() {
        let v = validator(Rule::Email);
        for ok in [
            "a@example.com",
            "first.last+tag@mail.example.co.uk",
            "o'hara@x.io",
            "jörg@bücher.de",
        ] {
            passes(&v, text(ok));
        }
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a@example",
            "a@@example.com",
            "a b@example.com",
            "a@exa mple.com",
            ".a@example.com",
            "a..b@example.com",
            "a@-example.com",
            "a@example..com",
            "a@1.2.3.4",
            " a@example.com",
        ] {
            let r = fails(&v, "email", text(bad));
            assert!(r.ends_with("is not a valid email address"), "{bad}: {r}");
        }
        assert_eq!(
            fails(&v, "email", text("nope")),
            "email 'nope' is not a valid email address"
        );
    }
}
