//! The notice template language: header lines, an empty line, a body with
//! `{{field}}` placeholders, one loop over the account's pipes
//! (`{{#pipes}}` ... `{{/pipes}}`) and sections shown only when a field is
//! not empty (`{{?alias}}` ... `{{/alias}}`). Nothing else: no expressions,
//! no file inclusion, no code. Every mistake is an error that names its
//! line and column, found before the survey runs.
#![forbid(unsafe_code)]

/// A value a template can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    User,
    Name,
    Contact,
    Domain,
    Count,
    S,
    Open,
    Number,
    File,
    Line,
    Where,
    Alias,
    Pipe,
    Code,
    Reason,
    Advice,
}

/// Every field by name; the second list holds the fields of one pipe.
const ACCOUNT_FIELDS: [(&str, Field); 7] = [
    ("user", Field::User),
    ("name", Field::Name),
    ("contact", Field::Contact),
    ("domain", Field::Domain),
    ("count", Field::Count),
    ("s", Field::S),
    ("open", Field::Open),
];
const PIPE_FIELDS: [(&str, Field); 9] = [
    ("number", Field::Number),
    ("file", Field::File),
    ("line", Field::Line),
    ("where", Field::Where),
    ("alias", Field::Alias),
    ("pipe", Field::Pipe),
    ("code", Field::Code),
    ("reason", Field::Reason),
    ("advice", Field::Advice),
];

impl Field {
    fn by_name(name: &str) -> Option<Field> {
        ACCOUNT_FIELDS.iter().chain(PIPE_FIELDS.iter()).find(|(n, _)| *n == name).map(|(_, f)| *f)
    }
    fn per_pipe(self) -> bool {
        PIPE_FIELDS.iter().any(|(_, f)| *f == self)
    }
    /// Sentences, wrapped to the body's width under where they start.
    fn wraps(self) -> bool {
        matches!(self, Field::Reason | Field::Advice)
    }
}

/// The header lines a template may set; cagepipe writes the others (To,
/// Date, Message-ID, MIME-Version, Content-*) itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    Subject,
    From,
    ReplyTo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(String),
    Field(Field),
    Pipes(Vec<Node>),
    IfSet(Field, Vec<Node>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    subject: Vec<Node>,
    /// From and Reply-To as written: plain ASCII, no placeholders.
    pub(crate) from: Option<String>,
    pub(crate) reply_to: Option<String>,
    body: Vec<Node>,
}

/// What one notice shows: the account's fields and each pipe's.
pub(crate) struct Values {
    pub(crate) account: Vec<(Field, String)>,
    pub(crate) pipes: Vec<Vec<(Field, String)>>,
}

/// Width the wrapped fields keep to.
const WIDTH: usize = 72;

fn at(line: usize, column: usize, what: impl std::fmt::Display) -> String {
    format!("line {line}, column {column}: {what}")
}

fn known() -> String {
    let names: Vec<&str> = ACCOUNT_FIELDS.iter().chain(PIPE_FIELDS.iter()).map(|(n, _)| *n).collect();
    names.join(", ")
}

/// One piece of a line: text, or a tag with its column.
#[derive(Debug)]
enum Piece {
    Text(String),
    Tag { inner: String, column: usize },
}

/// Split one line into text and `{{tags}}`; a tag never spans lines.
fn pieces(line: &str, number: usize) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = line;
    let mut column = 1;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            out.push(Piece::Text(rest[..open].to_string()));
        }
        column += rest[..open].chars().count();
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(at(
                number,
                column,
                "`{{` is not closed by `}}` on the same line (write {{open}} for a literal `{{`)",
            ));
        };
        out.push(Piece::Tag { inner: after[..close].trim().to_string(), column });
        column += 4 + after[..close].chars().count();
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
    Ok(out)
}

/// An open section while parsing: what it is, where it began, and the
/// nodes of the enclosing level.
struct Open {
    kind: Option<Field>,
    line: usize,
    column: usize,
    outer: Vec<Node>,
}

fn section_name(kind: Option<Field>) -> String {
    match kind {
        None => "{{#pipes}}".into(),
        Some(f) => format!("{{{{?{}}}}}", name_of(f)),
    }
}

fn name_of(field: Field) -> &'static str {
    ACCOUNT_FIELDS.iter().chain(PIPE_FIELDS.iter()).find(|(_, f)| *f == field).map(|(n, _)| *n).unwrap_or("?")
}

fn field(inner: &str, line: usize, column: usize, in_pipes: bool) -> Result<Field, String> {
    let f = Field::by_name(inner)
        .ok_or_else(|| at(line, column, format!("unknown placeholder `{{{{{inner}}}}}` (known: {})", known())))?;
    if f.per_pipe() && !in_pipes {
        return Err(at(
            line,
            column,
            format!("`{{{{{inner}}}}}` belongs to one pipe: use it between {{{{#pipes}}}} and {{{{/pipes}}}}"),
        ));
    }
    Ok(f)
}

/// Parse body lines (numbered from `first`) into nodes.
fn parse_body(lines: &[&str], first: usize) -> Result<Vec<Node>, String> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let push_text = |nodes: &mut Vec<Node>, t: &str| match nodes.last_mut() {
        Some(Node::Text(prev)) => prev.push_str(t),
        _ => nodes.push(Node::Text(t.to_string())),
    };
    for (i, raw) in lines.iter().enumerate() {
        let number = first + i;
        let ps = pieces(raw, number)?;
        // A line holding one section tag and blanks disappears whole.
        let tags: Vec<&Piece> = ps.iter().filter(|p| matches!(p, Piece::Tag { .. })).collect();
        let blank = ps.iter().all(|p| match p {
            Piece::Text(t) => t.trim().is_empty(),
            Piece::Tag { inner, .. } => inner.starts_with(['#', '?', '/']),
        });
        let standalone = tags.len() == 1 && blank;
        for p in &ps {
            match p {
                Piece::Text(t) if !standalone => push_text(&mut nodes, t),
                Piece::Text(_) => {}
                Piece::Tag { inner, column } => {
                    let column = *column;
                    let in_pipes = stack.iter().any(|o| o.kind.is_none());
                    if let Some(name) = inner.strip_prefix('#') {
                        if name.trim() != "pipes" {
                            return Err(at(
                                number,
                                column,
                                format!("`{{{{#{name}}}}}`: the only loop is {{{{#pipes}}}}"),
                            ));
                        }
                        if in_pipes {
                            return Err(at(number, column, "{{#pipes}} inside {{#pipes}}"));
                        }
                        stack.push(Open { kind: None, line: number, column, outer: std::mem::take(&mut nodes) });
                    } else if let Some(name) = inner.strip_prefix('?') {
                        let f = field(name.trim(), number, column, in_pipes)?;
                        stack.push(Open { kind: Some(f), line: number, column, outer: std::mem::take(&mut nodes) });
                    } else if let Some(name) = inner.strip_prefix('/') {
                        let name = name.trim();
                        let Some(open) = stack.pop() else {
                            return Err(at(number, column, format!("`{{{{/{name}}}}}` closes nothing")));
                        };
                        let expected = match open.kind {
                            None => "pipes",
                            Some(f) => name_of(f),
                        };
                        if name != expected {
                            return Err(at(
                                number,
                                column,
                                format!(
                                    "`{{{{/{name}}}}}` does not close {} of line {}, column {}",
                                    section_name(open.kind),
                                    open.line,
                                    open.column
                                ),
                            ));
                        }
                        let inner_nodes = std::mem::replace(&mut nodes, open.outer);
                        nodes.push(match open.kind {
                            None => Node::Pipes(inner_nodes),
                            Some(f) => Node::IfSet(f, inner_nodes),
                        });
                    } else if inner == "open" {
                        push_text(&mut nodes, "{{");
                    } else {
                        nodes.push(Node::Field(field(inner, number, column, in_pipes)?));
                    }
                }
            }
        }
        if !standalone && i + 1 < lines.len() {
            push_text(&mut nodes, "\n");
        }
    }
    if let Some(open) = stack.pop() {
        return Err(at(open.line, open.column, format!("{} is never closed", section_name(open.kind))));
    }
    Ok(nodes)
}

impl Template {
    /// Parse a template: `Subject:` (required), `From:`, `Reply-To:`, an
    /// empty line, the body. Errors say `line L, column C: what`.
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
        let Some(blank) = lines.iter().position(|l| l.is_empty()) else {
            return Err(at(1, 1, "no empty line: a template is header lines (Subject: ...), an empty line, the body"));
        };
        let (mut subject, mut from, mut reply_to) = (None, None, None);
        for (i, line) in lines[..blank].iter().enumerate() {
            let number = i + 1;
            let Some((name, value)) = line.split_once(':') else {
                return Err(at(number, 1, "a header line is `Name: value`"));
            };
            let header = match name.to_ascii_lowercase().as_str() {
                "subject" => Header::Subject,
                "from" => Header::From,
                "reply-to" => Header::ReplyTo,
                "to" | "date" | "message-id" | "mime-version" | "content-type" | "content-transfer-encoding" => {
                    return Err(at(number, 1, format!("cagepipe writes `{name}:` itself")))
                }
                _ => {
                    return Err(at(
                        number,
                        1,
                        format!("unknown header `{name}:` (a template sets Subject, From, Reply-To)"),
                    ))
                }
            };
            // The column the value starts in (after the colon and blanks).
            let column = name.chars().count() + 2 + (value.len() - value.trim_start().len());
            let value_text = value.trim();
            if value_text.is_empty() {
                return Err(at(number, column, format!("`{name}:` is empty")));
            }
            match header {
                Header::Subject => {
                    let ps = pieces(value_text, number)?;
                    let mut nodes = Vec::new();
                    for p in ps {
                        match p {
                            Piece::Text(t) => nodes.push(Node::Text(t)),
                            Piece::Tag { inner, .. } if inner == "open" => nodes.push(Node::Text("{{".into())),
                            Piece::Tag { inner, column: c } => {
                                let c = c + column - 1;
                                if inner.starts_with(['#', '?', '/']) {
                                    return Err(at(number, c, "sections and loops belong to the body"));
                                }
                                nodes.push(Node::Field(field(&inner, number, c, false)?));
                            }
                        }
                    }
                    subject = Some(nodes);
                }
                Header::From | Header::ReplyTo => {
                    if value_text.contains("{{") || !value_text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                        return Err(at(
                            number,
                            column,
                            format!("`{name}:` is a plain ASCII address, without placeholders"),
                        ));
                    }
                    let slot = if header == Header::From { &mut from } else { &mut reply_to };
                    *slot = Some(value_text.to_string());
                }
            }
        }
        let Some(subject) = subject else { return Err(at(1, 1, "no `Subject:` line")) };
        let mut body_lines = &lines[blank + 1..];
        // A file's final newline ends the last line; it starts no new one.
        if body_lines.last() == Some(&"") {
            body_lines = &body_lines[..body_lines.len() - 1];
        }
        let body = parse_body(body_lines, blank + 2)?;
        Ok(Template { subject, from, reply_to, body })
    }

    /// The subject for these values (not yet encoded for the header).
    pub(crate) fn subject(&self, v: &Values) -> String {
        let mut out = String::new();
        render(&self.subject, v, None, &mut out);
        out
    }

    /// The body for these values, ending in one newline.
    pub(crate) fn body(&self, v: &Values) -> String {
        let mut out = String::new();
        render(&self.body, v, None, &mut out);
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out
    }
}

fn value(v: &Values, pipe: Option<usize>, f: Field) -> &str {
    let list = match pipe {
        Some(i) if f.per_pipe() => &v.pipes[i],
        _ => &v.account,
    };
    list.iter().find(|(g, _)| *g == f).map_or("", |(_, s)| s.as_str())
}

fn render(nodes: &[Node], v: &Values, pipe: Option<usize>, out: &mut String) {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Field(f) if f.wraps() => {
                let column = out.rsplit('\n').next().map_or(0, |l| l.chars().count());
                wrap(value(v, pipe, *f), column, out);
            }
            Node::Field(f) => out.push_str(value(v, pipe, *f)),
            Node::Pipes(inner) => {
                for i in 0..v.pipes.len() {
                    render(inner, v, Some(i), out);
                }
            }
            Node::IfSet(f, inner) => {
                if !value(v, pipe, *f).is_empty() {
                    render(inner, v, pipe, out);
                }
            }
        }
    }
}

/// Words of `text` up to [`WIDTH`] columns, continuation lines indented to
/// `column`; a word longer than a line keeps a line of its own.
fn wrap(text: &str, column: usize, out: &mut String) {
    let mut at = column;
    let mut first = true;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let len = word.chars().count();
        if !first && at + 1 + len > WIDTH {
            out.push('\n');
            out.push_str(&" ".repeat(column));
            at = column;
        } else if !first {
            out.push(' ');
            at += 1;
        }
        out.push_str(word);
        at += len;
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values {
            account: vec![(Field::User, "bob".into()), (Field::Count, "2".into()), (Field::S, "s".into())],
            pipes: vec![
                vec![(Field::Number, "1".into()), (Field::Pipe, "|a".into()), (Field::Alias, "info".into())],
                vec![(Field::Number, "2".into()), (Field::Pipe, "|b".into())],
            ],
        }
    }

    fn err(text: &str) -> String {
        Template::parse(text).unwrap_err()
    }

    #[test]
    fn fields_loops_and_sections_render() {
        let t = Template::parse(
            "Subject: {{count}} pipe{{s}} of {{user}}\n\nHi {{user}},\n{{#pipes}}\n{{number}}. {{pipe}}{{?alias}} ({{alias}}){{/alias}}\n{{/pipes}}\nBye {{open}}x}}\n",
        )
        .unwrap();
        let v = values();
        assert_eq!(t.subject(&v), "2 pipes of bob");
        assert_eq!(t.body(&v), "Hi bob,\n1. |a (info)\n2. |b\nBye {{x}}\n");
    }

    #[test]
    fn long_sentences_wrap_under_where_they_start() {
        let t = Template::parse("Subject: x\n\n{{#pipes}}\n   Problem: {{reason}}\n{{/pipes}}\n").unwrap();
        let reason = "word ".repeat(30);
        let v = Values { account: vec![], pipes: vec![vec![(Field::Reason, reason.trim().to_string())]] };
        let body = t.body(&v);
        let lines: Vec<&str> = body.lines().collect();
        assert!(lines.len() > 2, "{body}");
        assert!(lines.iter().all(|l| l.chars().count() <= WIDTH), "{body}");
        assert!(lines[1].starts_with(&" ".repeat(12)) && !lines[1].starts_with(&" ".repeat(13)), "{body}");
        assert_eq!(body.split_whitespace().filter(|w| *w == "word").count(), 30);
    }

    #[test]
    fn mistakes_name_line_and_column() {
        assert_eq!(
            err("Subject: x\n\nHello {{nmae}}\n"),
            format!("line 3, column 7: unknown placeholder `{{{{nmae}}}}` (known: {})", known())
        );
        assert_eq!(
            err("Subject: x\n\n{{reason}}\n"),
            "line 3, column 1: `{{reason}}` belongs to one pipe: use it between {{#pipes}} and {{/pipes}}"
        );
        assert_eq!(err("Subject: {{bad}}\n\nx\n").split(':').next(), Some("line 1, column 10"));
        assert!(err("Subject: x\n\nab {{user\n").starts_with("line 3, column 4: `{{` is not closed"));
        assert!(err("Subject: x\n\n{{#pipes}}\n{{pipe}}\n").starts_with("line 3, column 1: {{#pipes}} is never closed"));
        assert!(err("Subject: x\n\n{{#pipes}}{{?alias}}{{/pipes}}")
            .contains("does not close {{?alias}} of line 3, column 11"));
        assert!(err("Subject: x\n\n{{/pipes}}\n").contains("closes nothing"));
        assert!(err("Subject: x\n\n{{#users}}{{/users}}\n").contains("the only loop is {{#pipes}}"));
        assert!(err("Subject: x\n\n{{#pipes}}{{#pipes}}{{/pipes}}{{/pipes}}\n").contains("inside {{#pipes}}"));
        assert!(err("Subject: x\nX-Evil: y\n\nb\n").starts_with("line 2, column 1: unknown header `X-Evil:`"));
        assert!(err("To: a@b\nSubject: x\n\nb\n").contains("cagepipe writes `To:` itself"));
        assert!(err("Subject: x\nFrom: {{user}}@x\n\nb\n").starts_with("line 2, column 7:"));
        assert!(err("Subject: x\nbody without a blank line\n").contains("`Name: value`"));
        assert!(err("Subject: x").contains("no empty line"));
        assert!(err("From: a@b\n\nbody\n").contains("no `Subject:` line"));
        assert!(err("Subject: x {{#pipes}}\n\nb\n").contains("belong to the body"));
    }

    #[test]
    fn nothing_but_placeholders_is_special() {
        // `{{include /etc/shadow}}` or `{{user | sh}}` are just unknown names.
        assert!(err("Subject: x\n\n{{include /etc/shadow}}\n").contains("unknown placeholder"));
        assert!(err("Subject: x\n\n{{user | sh}}\n").contains("unknown placeholder"));
        let t = Template::parse("Subject: x\n\n$(id) `id` ${HOME} {single}\n").unwrap();
        assert_eq!(t.body(&values()), "$(id) `id` ${HOME} {single}\n");
    }
}
