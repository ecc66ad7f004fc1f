/// A template's syntax or evaluation error. Syntax errors carry the template line and column
/// (1-based); evaluation errors the line of the statement; `raised` is `raise_exception(...)`.
public enum JinjaError: Error, CustomStringConvertible, Equatable, Sendable {
    case syntax(message: String, line: Int, column: Int)
    case runtime(message: String, line: Int)
    case raised(message: String)

    public var description: String {
        switch self {
        case let .syntax(m, l, c): return "template syntax error at line \(l), column \(c): \(m)"
        case let .runtime(m, l): return "template error at line \(l): \(m)"
        case let .raised(m): return m
        }
    }
}

/// One token of a template: text between tags, tag delimiters, and the tokens inside tags.
enum TokenKind: Equatable {
    case data(String)
    case variableBegin, variableEnd, blockBegin, blockEnd
    case name(String)
    case string(String)
    case int(Int)
    case float(Double)
    /// operators and punctuation: + - * / // % ** ~ == != < <= > >= = ( ) [ ] { } , . : |
    case op(String)
    case eof
}

struct Token {
    var kind: TokenKind
    var line: Int
    var column: Int
}

/// Splits a template into tokens the way jinja2's lexer does with `trim_blocks=True` and
/// `lstrip_blocks=True` (how transformers configures it): `{%-`/`-%}` strip whitespace, `+`
/// keeps it, a block tag alone on its line takes the line's indentation and newline with it,
/// comments vanish, one trailing newline of the template is dropped.
struct Lexer {
    let trimBlocks: Bool
    let lstripBlocks: Bool
    var source: [Unicode.Scalar]
    var pos = 0
    var line = 1
    var column = 1
    var tokens: [Token] = []

    init(_ text: String, trimBlocks: Bool = true, lstripBlocks: Bool = true) {
        self.trimBlocks = trimBlocks
        self.lstripBlocks = lstripBlocks
        // Python's splitlines + "\n".join: every line break becomes "\n", one trailing break goes
        var s: [Unicode.Scalar] = []
        let scalars = Array(text.unicodeScalars)
        var i = 0
        while i < scalars.count {
            let c = scalars[i]
            switch c.value {
            case 0x0D:
                s.append("\n")
                if i + 1 < scalars.count && scalars[i + 1] == "\n" { i += 1 }
            case 0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029: s.append("\n")
            default: s.append(c)
            }
            i += 1
        }
        if s.last == "\n" { s.removeLast() }
        source = s
    }

    func error(_ m: String, _ l: Int? = nil, _ c: Int? = nil) -> JinjaError { .syntax(message: m, line: l ?? line, column: c ?? column) }

    func peek(_ k: Int = 0) -> Unicode.Scalar? { pos + k < source.count ? source[pos + k] : nil }

    func matches(_ s: String, at p: Int) -> Bool {
        var j = p
        for c in s.unicodeScalars {
            guard j < source.count, source[j] == c else { return false }
            j += 1
        }
        return true
    }

    mutating func advance(_ n: Int = 1) {
        for _ in 0..<n where pos < source.count {
            if source[pos] == "\n" { line += 1; column = 1 } else { column += 1 }
            pos += 1
        }
    }

    static func isSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }

    mutating func tokenize() throws -> [Token] {
        var lineStarting = true
        while pos < source.count {
            // find the next tag start
            var j = pos
            var found: (kind: Character, sign: Unicode.Scalar?)? = nil
            while j + 1 < source.count {
                if source[j] == "{", source[j + 1] == "{" || source[j + 1] == "%" || source[j + 1] == "#" {
                    let s = j + 2 < source.count && (source[j + 2] == "-" || source[j + 2] == "+") ? source[j + 2] : nil
                    found = (Character(source[j + 1]), s)
                    break
                }
                j += 1
            }
            guard let tag = found else {
                let text = String(String.UnicodeScalarView(source[pos...]))
                tokens.append(Token(kind: .data(text), line: line, column: column))
                advance(source.count - pos)
                break
            }
            var text = Array(source[pos..<j])
            if tag.sign == "-" {
                while let l = text.last, Lexer.isSpace(l) { text.removeLast() }
            } else if tag.sign != "+" && lstripBlocks && tag.kind != "{" {
                let lastNL = text.lastIndex(of: "\n").map { $0 + 1 } ?? 0
                if lastNL > 0 || lineStarting, text[lastNL...].allSatisfy({ $0 == " " || $0 == "\t" || ($0 != "\n" && Lexer.isSpace($0)) }) {
                    text.removeSubrange(lastNL...)
                }
            }
            let dataLine = line, dataColumn = column
            advance(j - pos)
            if !text.isEmpty { tokens.append(Token(kind: .data(String(String.UnicodeScalarView(text))), line: dataLine, column: dataColumn)) }
            let tagLine = line, tagColumn = column
            advance(tag.sign == nil ? 2 : 3)
            switch tag.kind {
            case "#":
                // comment: up to "#}", "-#}" (strips what follows) or "+#}"
                var k = pos
                while k + 1 < source.count, !(source[k] == "#" && source[k + 1] == "}") { k += 1 }
                guard k + 1 < source.count else { throw error("missing end of comment tag", tagLine, tagColumn) }
                let strip = k > pos && source[k - 1] == "-"
                let keep = k > pos && source[k - 1] == "+"
                advance(k + 2 - pos)
                lineStarting = afterTagEnd(strip: strip, keep: keep, trim: trimBlocks)
            case "{":
                tokens.append(Token(kind: .variableBegin, line: tagLine, column: tagColumn))
                lineStarting = try lexTag(block: false)
            default:
                tokens.append(Token(kind: .blockBegin, line: tagLine, column: tagColumn))
                // {% raw %} ... {% endraw %}: the text between, untouched
                let save = (pos, line, column)
                skipSpaces()
                if matches("raw", at: pos), let after = peek(3), !isNameChar(after) {
                    advance(3)
                    skipSpaces()
                    let strip = peek() == "-"
                    if strip || peek() == "+" { advance() }
                    guard peek() == "%", peek(1) == "}" else { throw error("expected '%}' after raw") }
                    tokens.removeLast()
                    advance(2)
                    if strip { while let c = peek(), Lexer.isSpace(c) { advance() } } else if trimBlocks, peek() == "\n" { advance() }
                    try lexRaw(tagLine, tagColumn)
                    lineStarting = pos > 0 && source[pos - 1] == "\n"
                } else {
                    (pos, line, column) = save
                    lineStarting = try lexTag(block: true)
                }
            }
        }
        tokens.append(Token(kind: .eof, line: line, column: column))
        return tokens
    }

    /// After a tag's end: `-` strips all whitespace that follows, trim_blocks one newline.
    /// Returns whether the consumed text ended at a line start (jinja2's `line_starting`).
    mutating func afterTagEnd(strip: Bool, keep: Bool, trim: Bool) -> Bool {
        var last: Unicode.Scalar? = pos > 0 ? source[pos - 1] : nil
        if strip {
            while let c = peek(), Lexer.isSpace(c) { last = c; advance() }
        } else if !keep && trim, peek() == "\n" {
            last = "\n"
            advance()
        }
        return last == "\n"
    }

    mutating func skipSpaces() { while let c = peek(), Lexer.isSpace(c) { advance() } }

    func isNameChar(_ c: Unicode.Scalar) -> Bool { c == "_" || c.properties.isAlphabetic || ("0"..."9").contains(c) }

    mutating func lexRaw(_ l: Int, _ c: Int) throws {
        let startLine = line, startColumn = column
        var k = pos
        while k < source.count {
            if source[k] == "{", k + 1 < source.count, source[k + 1] == "%" {
                var m = k + 2
                let sign = m < source.count && (source[m] == "-" || source[m] == "+") ? source[m] : nil
                if sign != nil { m += 1 }
                while m < source.count, Lexer.isSpace(source[m]) { m += 1 }
                if matches("endraw", at: m) {
                    var text = Array(source[pos..<k])
                    if sign == "-" { while let x = text.last, Lexer.isSpace(x) { text.removeLast() } }
                    tokens.append(Token(kind: .data(String(String.UnicodeScalarView(text))), line: startLine, column: startColumn))
                    m += 6
                    while m < source.count, Lexer.isSpace(source[m]) { m += 1 }
                    let strip = m < source.count && source[m] == "-"
                    let keep = m < source.count && source[m] == "+"
                    if strip || keep { m += 1 }
                    guard m + 1 < source.count, source[m] == "%", source[m + 1] == "}" else { throw error("expected '%}' after endraw", l, c) }
                    advance(m + 2 - pos)
                    _ = afterTagEnd(strip: strip, keep: keep, trim: trimBlocks)
                    return
                }
            }
            k += 1
        }
        throw error("missing end of raw directive", l, c)
    }

    static let operators2 = ["//", "**", "==", "!=", "<=", ">="]
    static let operators1: Set<Unicode.Scalar> = ["+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"]

    /// The tokens inside `{{ }}` or `{% %}` up to the end delimiter at bracket depth 0.
    mutating func lexTag(block: Bool) throws -> Bool {
        var brackets: [Unicode.Scalar] = []
        let endChar: Unicode.Scalar = block ? "%" : "}"
        while true {
            skipSpaces()
            guard let c = peek() else { throw error(block ? "unexpected end of template: missing '%}'" : "unexpected end of template: missing '}}'") }
            if brackets.isEmpty {
                let strip = c == "-" && peek(1) == endChar && peek(2) == "}"
                let keep = block && c == "+" && peek(1) == "%" && peek(2) == "}"
                if strip || keep || (c == endChar && peek(1) == "}") {
                    tokens.append(Token(kind: block ? .blockEnd : .variableEnd, line: line, column: column))
                    advance(strip || keep ? 3 : 2)
                    return afterTagEnd(strip: strip, keep: keep, trim: block && trimBlocks)
                }
            }
            let l = line, col = column
            if c == "'" || c == "\"" {
                tokens.append(Token(kind: .string(try lexString(quote: c)), line: l, column: col))
            } else if ("0"..."9").contains(c) {
                tokens.append(Token(kind: lexNumber(), line: l, column: col))
            } else if c == "_" || c.properties.isAlphabetic {
                var s = ""
                while let d = peek(), isNameChar(d) { s.unicodeScalars.append(d); advance() }
                tokens.append(Token(kind: .name(s), line: l, column: col))
            } else if let two = peek(1).map({ String(c) + String($0) }), Lexer.operators2.contains(two) {
                tokens.append(Token(kind: .op(two), line: l, column: col))
                advance(2)
            } else if Lexer.operators1.contains(c) {
                switch c {
                case "(": brackets.append(")")
                case "[": brackets.append("]")
                case "{": brackets.append("}")
                case ")", "]", "}":
                    guard let want = brackets.popLast() else { throw error("unexpected '\(c)'") }
                    if want != c { throw error("unexpected '\(c)', expected '\(want)'") }
                default: break
                }
                tokens.append(Token(kind: .op(String(c)), line: l, column: col))
                advance()
            } else {
                throw error("unexpected character '\(c)'")
            }
        }
    }

    mutating func lexNumber() -> TokenKind {
        var s = ""
        var isFloat = false
        func digits() { while let d = peek(), ("0"..."9").contains(d) || d == "_" { if d != "_" { s.unicodeScalars.append(d) }; advance() } }
        digits()
        if peek() == ".", let d = peek(1), ("0"..."9").contains(d) {
            isFloat = true
            s += "."
            advance()
            digits()
        }
        if let e = peek(), e == "e" || e == "E" {
            var k = 1
            if let sgn = peek(1), sgn == "+" || sgn == "-" { k = 2 }
            if let d = peek(k), ("0"..."9").contains(d) {
                isFloat = true
                for _ in 0..<k { s.unicodeScalars.append(peek()!); advance() }
                digits()
            }
        }
        if !isFloat, let i = Int(s) { return .int(i) }
        return .float(Double(s) ?? .infinity)
    }

    mutating func lexString(quote: Unicode.Scalar) throws -> String {
        let l = line, c = column
        advance()
        var out = String.UnicodeScalarView()
        while true {
            guard let ch = peek() else { throw error("unexpected end of string", l, c) }
            advance()
            if ch == quote { break }
            if ch != "\\" { out.append(ch); continue }
            guard let e = peek() else { throw error("unexpected end of string", l, c) }
            advance()
            switch e {
            case "n": out.append("\n")
            case "t": out.append("\t")
            case "r": out.append("\r")
            case "\\": out.append("\\")
            case "'": out.append("'")
            case "\"": out.append("\"")
            case "0": out.append("\0")
            case "a": out.append("\u{07}")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "v": out.append("\u{0B}")
            case "\n": break
            case "x", "u", "U":
                let n = e == "x" ? 2 : e == "u" ? 4 : 8
                var v: UInt32 = 0
                for _ in 0..<n {
                    guard let h = peek(), let d = h.properties.numericType != nil || ("a"..."f").contains(h) || ("A"..."F").contains(h) ? UInt32(String(h), radix: 16) : nil else {
                        throw error("bad \\\(e) escape in a string")
                    }
                    v = v * 16 + d
                    advance()
                }
                guard let u = Unicode.Scalar(v) else { throw error("bad \\\(e) escape in a string") }
                out.append(u)
            default:
                // Python keeps an unknown escape as written
                out.append("\\"); out.append(e)
            }
        }
        return String(out)
    }
}
