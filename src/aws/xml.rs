//! AWS's XML answers (Query and REST-XML protocols) as a small tree: elements by local name,
//! their children and their text, with XML's escapes undone.

/// One element of an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Its local name (without a namespace prefix).
    pub name: String,
    /// Its child elements, in order.
    pub children: Vec<Element>,
    /// Its text (for leaf elements), unescaped and trimmed.
    pub text: String,
}

/// How deep an answer may nest; AWS's answers stay far below.
const MAX_DEPTH: usize = 64;

impl Element {
    /// Parses a document; the error says what is wrong with it.
    pub fn parse(doc: &str) -> Result<Element, String> {
        use xmlparser::{ElementEnd, Token, Tokenizer};
        let mut stack: Vec<Element> = vec![Element::default()];
        for token in Tokenizer::from(doc) {
            match token.map_err(|e| format!("not XML: {e}"))? {
                Token::ElementStart { local, .. } => {
                    if stack.len() > MAX_DEPTH {
                        return Err(format!("XML nested deeper than {MAX_DEPTH}"));
                    }
                    stack.push(Element {
                        name: local.as_str().to_string(),
                        ..Element::default()
                    });
                }
                Token::ElementEnd { end, .. } => match end {
                    ElementEnd::Open => {}
                    ElementEnd::Close(..) | ElementEnd::Empty => {
                        let done = stack.pop().filter(|_| !stack.is_empty());
                        match (done, stack.last_mut()) {
                            (Some(mut done), Some(parent)) => {
                                done.text = unescape(done.text.trim());
                                parent.children.push(done);
                            }
                            _ => return Err("unbalanced XML".into()),
                        }
                    }
                },
                Token::Text { text } | Token::Cdata { text, .. } => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(text.as_str());
                    }
                }
                _ => {}
            }
        }
        let mut root = stack.pop().filter(|_| stack.is_empty()).unwrap_or_default();
        match root.children.len() {
            1 => Ok(root.children.remove(0)),
            _ => Err("an XML document has one root element".into()),
        }
    }

    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child named `name`.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// The first element named `name` at any depth (this one included), depth first.
    pub fn find(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }

    /// The items of a list: `<name><item>…</item>…</name>` (EC2's shape), or `<name><member>…`.
    pub fn items<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.child(name)
            .into_iter()
            .flat_map(|list| list.children.iter())
            .filter(|c| c.name == "item" || c.name == "member")
    }
}

/// Undoes XML's escapes: the five named entities and numeric character references.
fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for an XML body vigilo sends.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_of_each_protocol_are_read() {
        let ec2 = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>InvalidGroup.NotFound</Code><Message>The security group &apos;sg-1&apos; does not exist</Message></Error></Errors><RequestID>r1</RequestID></Response>";
        let e = Element::parse(ec2).unwrap();
        assert_eq!(e.find("Code").unwrap().text, "InvalidGroup.NotFound");
        assert_eq!(
            e.find("Message").unwrap().text,
            "The security group 'sg-1' does not exist"
        );
        let s3 = "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>Enabled</Status></VersioningConfiguration>";
        let v = Element::parse(s3).unwrap();
        assert_eq!(v.text_of("Status"), Some("Enabled"));
        let list = Element::parse(
            "<a><tagSet><item><key>k&amp;1</key></item><item><key>&#x41;</key></item></tagSet><b/></a>",
        )
        .unwrap();
        let keys: Vec<&str> = list
            .items("tagSet")
            .filter_map(|i| i.text_of("key"))
            .collect();
        assert_eq!(keys, ["k&1", "A"]);
        assert!(Element::parse("<a><b></a>").is_err());
        assert!(Element::parse("not xml").is_err());
    }

    #[test]
    fn escaped_text_reads_back_as_written() {
        let s = "a<b>&\"c'";
        let e = Element::parse(&format!("<v>{}</v>", escape(s))).unwrap();
        assert_eq!(e.text, s);
    }
}
