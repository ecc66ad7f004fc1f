import Foundation

/// A context-free grammar over the bytes of UTF-8 text, read from llama.cpp's GBNF notation
/// (`root ::= "{" ws members "}"`, `[a-z]`, `[^"\\]`, `.`, groups, `* + ?`, `{m}`, `{m,}`,
/// `{m,n}`, `#` comments). The start rule is `root`.
///
/// Characters are Unicode scalars in the notation and bytes in the grammar: a character class
/// becomes a rule whose alternatives are the UTF-8 byte sequences of its code points (the classic
/// range splitting of RE2 and Rust's `utf8-ranges`), so the matcher (`GrammarMatcher`) moves one
/// byte at a time and a token that ends inside a character is matched as far as it goes.
/// Repetition becomes right-recursive rules. Left recursion (a rule that can reach itself without
/// reading a byte) and rules that derive no finite string are refused when the grammar is read.
public struct Grammar: Sendable {
    /// One element of an alternative.
    public enum Element: Sendable, Equatable {
        /// one byte in lo...hi
        case bytes(UInt8, UInt8)
        /// a rule, by index
        case rule(Int32)
        /// the end of an alternative
        case end
    }

    /// Every alternative of every rule, each ended by `.end`.
    public internal(set) var elements: [Element] = []
    /// [rules] the index in `elements` where each alternative of the rule starts
    public internal(set) var alternatives: [[Int32]] = []
    /// [rules] names (generated rules: `name_N`)
    public internal(set) var names: [String] = []
    public internal(set) var root: Int32 = 0
    /// [elements] the fewest bytes from each element to the end of its alternative
    public internal(set) var restMin: [Int32] = []

    /// A grammar text that cannot be read (the line and column, and what is wrong).
    public struct ParseError: Error, CustomStringConvertible, Equatable, Sendable {
        public let line: Int
        public let column: Int
        public let reason: String
        public var description: String { "grammar, line \(line), column \(column): \(reason)" }
    }

    /// Parses GBNF text. Throws `ParseError` naming the line and column.
    public init(gbnf text: String) throws {
        var p = GBNFParser(text: Array(text.unicodeScalars))
        try p.parse()
        self = try p.builder.finish(rootName: "root")
    }

    init() {}
}

/// Builds a `Grammar` from rules given as alternatives of symbols.
struct GrammarBuilder {
    enum Symbol: Hashable {
        case bytes(UInt8, UInt8)
        case rule(Int32)
    }
    var names: [String] = []
    var ids: [String: Int32] = [:]
    /// [rules] the alternatives (nil: referred to, not yet defined)
    var bodies: [[[Symbol]]?] = []
    /// where a rule was first referred to (for "undefined rule" errors)
    var firstUse: [Int32: (Int, Int)] = [:]
    var classCache: [[ClosedRange<UInt32>]: Int32] = [:]

    /// The id of rule `name` (made on first use).
    mutating func id(_ name: String, at pos: (Int, Int) = (0, 0)) -> Int32 {
        if let i = ids[name] { return i }
        let i = Int32(names.count)
        names.append(name); bodies.append(nil); ids[name] = i
        firstUse[i] = pos
        return i
    }

    /// A new rule named after `base` (`base_1`, `base_2`, ...).
    mutating func fresh(_ base: String, _ alts: [[Symbol]]) -> Int32 {
        var k = names.count
        while ids["\(base)_\(k)"] != nil { k += 1 }
        let i = id("\(base)_\(k)")
        bodies[Int(i)] = alts
        return i
    }

    mutating func define(_ i: Int32, _ alts: [[Symbol]]) { bodies[Int(i)] = alts }

    static func literal(_ s: String) -> [Symbol] { s.utf8.map { .bytes($0, $0) } }

    /// A rule matching one code point of `ranges` (sorted or not; surrogates never match).
    mutating func charClass(_ ranges: [ClosedRange<UInt32>], negated: Bool) -> Int32 {
        var rs = GrammarBuilder.normalize(ranges)
        if negated { rs = GrammarBuilder.complement(rs) }
        rs = GrammarBuilder.complement(GrammarBuilder.complement(rs))  // surrogates out
        if let i = classCache[rs] { return i }
        var alts: [[Symbol]] = []
        for r in rs { for seq in GrammarBuilder.utf8Sequences(r.lowerBound, r.upperBound) { alts.append(seq.map { .bytes($0.lowerBound, $0.upperBound) }) } }
        let i = fresh("char", alts)
        classCache[rs] = i
        return i
    }

    /// Sorted, merged ranges.
    static func normalize(_ rs: [ClosedRange<UInt32>]) -> [ClosedRange<UInt32>] {
        var out: [ClosedRange<UInt32>] = []
        for r in rs.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = out.last, r.lowerBound <= last.upperBound &+ 1 {
                out[out.count - 1] = last.lowerBound...max(last.upperBound, r.upperBound)
            } else { out.append(r) }
        }
        return out
    }

    /// The code points (scalars: 0...0x10FFFF without the surrogates) outside `rs` (normalized).
    static func complement(_ rs: [ClosedRange<UInt32>]) -> [ClosedRange<UInt32>] {
        var out: [ClosedRange<UInt32>] = []
        var next: UInt32 = 0
        for r in normalize(rs + [0xD800...0xDFFF]) {
            if r.lowerBound > next { out.append(next...(r.lowerBound - 1)) }
            next = max(next, r.upperBound + 1)
        }
        if next <= 0x10FFFF { out.append(next...0x10FFFF) }
        return out.filter { !($0.lowerBound >= 0xD800 && $0.upperBound <= 0xDFFF) }
    }

    /// The UTF-8 byte sequences of the code points lo...hi, as sequences of byte ranges.
    static func utf8Sequences(_ lo: UInt32, _ hi: UInt32) -> [[ClosedRange<UInt8>]] {
        let limits: [UInt32] = [0x7F, 0x7FF, 0xFFFF, 0x10FFFF]
        var out: [[ClosedRange<UInt8>]] = []
        // split at the boundaries of encoded lengths
        var a = lo
        for (n, top) in limits.enumerated() where a <= hi && a <= top {
            let b = min(hi, top)
            split(a, b, length: n + 1, into: &out)
            a = b + 1
        }
        return out
    }

    /// lo...hi all encode in `length` bytes: split so that each piece is a product of byte ranges.
    private static func split(_ lo: UInt32, _ hi: UInt32, length: Int, into out: inout [[ClosedRange<UInt8>]]) {
        if length == 1 { out.append([UInt8(lo)...UInt8(hi)]); return }
        // continuation bits below the leading byte
        for i in 1..<length {
            let m: UInt32 = (1 << (6 * UInt32(i))) - 1
            if lo & ~m != hi & ~m {
                if lo & m != 0 {
                    split(lo, lo | m, length: length, into: &out)
                    split((lo | m) + 1, hi, length: length, into: &out)
                    return
                }
                if hi & m != m {
                    split(lo, (hi & ~m) - 1, length: length, into: &out)
                    split(hi & ~m, hi, length: length, into: &out)
                    return
                }
            }
        }
        let a = encode(lo, length), b = encode(hi, length)
        out.append((0..<length).map { a[$0]...b[$0] })
    }

    static func encode(_ c: UInt32, _ length: Int) -> [UInt8] {
        switch length {
        case 1: return [UInt8(c)]
        case 2: return [UInt8(0xC0 | (c >> 6)), UInt8(0x80 | (c & 0x3F))]
        case 3: return [UInt8(0xE0 | (c >> 12)), UInt8(0x80 | ((c >> 6) & 0x3F)), UInt8(0x80 | (c & 0x3F))]
        default: return [UInt8(0xF0 | (c >> 18)), UInt8(0x80 | ((c >> 12) & 0x3F)), UInt8(0x80 | ((c >> 6) & 0x3F)), UInt8(0x80 | (c & 0x3F))]
        }
    }

    /// The grammar: every referred rule defined, minimum lengths finite, no left recursion.
    func finish(rootName: String) throws -> Grammar {
        guard let root = ids[rootName], bodies[Int(root)] != nil else {
            throw Grammar.ParseError(line: 1, column: 1, reason: "no rule '\(rootName)' (the start rule)")
        }
        for (i, b) in bodies.enumerated() where b == nil {
            let (l, c) = firstUse[Int32(i)] ?? (0, 0)
            throw Grammar.ParseError(line: l, column: c, reason: "rule '\(names[i])' is used but not defined")
        }
        let rules = bodies.map { $0! }
        // fewest bytes each rule derives (fixpoint)
        let inf = Int32.max / 4
        var minLen = [Int32](repeating: inf, count: rules.count)
        var changed = true
        while changed {
            changed = false
            for (r, alts) in rules.enumerated() {
                for alt in alts {
                    var s: Int32 = 0
                    for sym in alt {
                        switch sym { case .bytes: s += 1; case let .rule(q): s = min(inf, s + minLen[Int(q)]) }
                    }
                    if s < minLen[r] { minLen[r] = s; changed = true }
                }
            }
        }
        if let bad = minLen.firstIndex(where: { $0 >= inf }) {
            let (l, c) = firstUse[Int32(bad)] ?? (1, 1)
            throw Grammar.ParseError(line: l, column: c, reason: "rule '\(names[bad])' derives no finite text (it always recurses)")
        }
        // left recursion: a rule reaching itself through rules that can all be empty before it
        let nullable = minLen.map { $0 == 0 }
        var leftEdges = [[Int]](repeating: [], count: rules.count)
        for (r, alts) in rules.enumerated() {
            for alt in alts {
                for sym in alt {
                    guard case let .rule(q) = sym else { break }
                    leftEdges[r].append(Int(q))
                    if !nullable[Int(q)] { break }
                }
            }
        }
        var state = [UInt8](repeating: 0, count: rules.count)  // 0 new, 1 on the path, 2 done
        func visit(_ r: Int) throws {
            state[r] = 1
            for q in leftEdges[r] {
                if state[q] == 1 {
                    let (l, c) = firstUse[Int32(q)] ?? (1, 1)
                    throw Grammar.ParseError(line: l, column: c, reason: "rule '\(names[q])' is left-recursive (it can reach itself before reading anything)")
                }
                if state[q] == 0 { try visit(q) }
            }
            state[r] = 2
        }
        for r in 0..<rules.count where state[r] == 0 { try visit(r) }

        var g = Grammar()
        g.names = names
        g.root = root
        for alts in rules {
            var starts: [Int32] = []
            for alt in alts {
                starts.append(Int32(g.elements.count))
                for sym in alt {
                    switch sym {
                    case let .bytes(a, b): g.elements.append(.bytes(a, b))
                    case let .rule(q): g.elements.append(.rule(q))
                    }
                }
                g.elements.append(.end)
            }
            g.alternatives.append(starts)
        }
        g.restMin = [Int32](repeating: 0, count: g.elements.count)
        var acc: Int32 = 0
        for i in stride(from: g.elements.count - 1, through: 0, by: -1) {
            switch g.elements[i] {
            case .end: acc = 0
            case .bytes: acc += 1
            case let .rule(q): acc += minLen[Int(q)]
            }
            g.restMin[i] = acc
        }
        return g
    }
}

/// The GBNF reader.
struct GBNFParser {
    let text: [Unicode.Scalar]
    var i = 0
    var builder = GrammarBuilder()

    init(text: [Unicode.Scalar]) { self.text = text }

    var position: (Int, Int) {
        var line = 1, col = 1
        for c in text[..<min(i, text.count)] { if c == "\n" { line += 1; col = 1 } else { col += 1 } }
        return (line, col)
    }

    func error(_ reason: String) -> Grammar.ParseError {
        let (l, c) = position
        return Grammar.ParseError(line: l, column: c, reason: reason)
    }

    var atEnd: Bool { i >= text.count }
    var peek: Unicode.Scalar? { i < text.count ? text[i] : nil }

    /// Skips spaces, tabs and comments; with `newlines`, line ends too.
    mutating func skipSpace(newlines: Bool) {
        while let c = peek {
            if c == " " || c == "\t" || (newlines && (c == "\n" || c == "\r")) { i += 1 }
            else if c == "#" { while let d = peek, d != "\n" { i += 1 } }
            else if !newlines && c == "\\" && i + 1 < text.count && text[i + 1] == "\n" { i += 2 }
            else { break }
        }
    }

    static func isNameChar(_ c: Unicode.Scalar) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "-" || c == "_"
    }

    mutating func name() throws -> String {
        let start = i
        while let c = peek, GBNFParser.isNameChar(c) { i += 1 }
        guard i > start else { throw error("expected a rule name, got \(peek.map { "'\($0)'" } ?? "the end")") }
        return String(String.UnicodeScalarView(text[start..<i]))
    }

    mutating func parse() throws {
        skipSpace(newlines: true)
        while !atEnd {
            let pos = position
            let n = try name()
            skipSpace(newlines: false)
            guard text.count >= i + 3, text[i] == ":", text[i + 1] == ":", text[i + 2] == "=" else { throw error("expected '::=' after '\(n)'") }
            i += 3
            skipSpace(newlines: true)
            let r = builder.id(n, at: pos)
            if builder.bodies[Int(r)] != nil { let (l, c) = pos; throw Grammar.ParseError(line: l, column: c, reason: "rule '\(n)' is defined twice") }
            builder.define(r, try alternatives(nested: false))
            skipSpace(newlines: true)
        }
    }

    /// `seq | seq | ...` up to a line end (top level) or `)` (nested).
    mutating func alternatives(nested: Bool) throws -> [[GrammarBuilder.Symbol]] {
        var alts: [[GrammarBuilder.Symbol]] = [try sequence(nested: nested)]
        while peek == "|" {
            i += 1
            skipSpace(newlines: true)
            alts.append(try sequence(nested: nested))
        }
        return alts
    }

    mutating func sequence(nested: Bool) throws -> [GrammarBuilder.Symbol] {
        var seq: [GrammarBuilder.Symbol] = []
        var lastStart = -1   // where the last element (a repetition's operand) starts
        while let c = peek {
            if c == "|" || c == ")" { break }
            if c == "\n" || c == "\r" {
                if !nested {
                    // a rule goes on past a line end only when the next line continues it
                    var j = i
                    while j < text.count, text[j] == "\n" || text[j] == "\r" || text[j] == " " || text[j] == "\t" { j += 1 }
                    if j < text.count, text[j] == "|" { i = j; break }
                    break
                }
                skipSpace(newlines: true)
                continue
            }
            let elementStart = seq.count
            if c == "\"" {
                i += 1
                while true {
                    guard let d = peek else { throw error("unterminated string") }
                    if d == "\"" { i += 1; break }
                    let s = try char()
                    seq += GrammarBuilder.literal(String(s))
                }
            } else if c == "[" {
                i += 1
                var negated = false
                if peek == "^" { negated = true; i += 1 }
                var ranges: [ClosedRange<UInt32>] = []
                while true {
                    guard let d = peek else { throw error("unterminated character class") }
                    if d == "]" { i += 1; break }
                    let lo = try char().value
                    var hi = lo
                    if peek == "-", i + 1 < text.count, text[i + 1] != "]" {
                        i += 1
                        hi = try char().value
                        guard hi >= lo else { throw error("range end below its start") }
                    }
                    ranges.append(lo...hi)
                }
                seq.append(.rule(builder.charClass(ranges, negated: negated)))
            } else if c == "." {
                i += 1
                seq.append(.rule(builder.charClass([], negated: true)))
            } else if c == "(" {
                i += 1
                skipSpace(newlines: true)
                let alts = try alternatives(nested: true)
                guard peek == ")" else { throw error("expected ')'") }
                i += 1
                seq.append(.rule(builder.fresh("group", alts)))
            } else if GBNFParser.isNameChar(c) {
                let pos = position
                seq.append(.rule(builder.id(try name(), at: pos)))
            } else if c == "*" || c == "+" || c == "?" || c == "{" {
                guard lastStart >= 0, lastStart < seq.count else { throw error("'\(c)' with nothing before it") }
                // the last item may be several byte symbols (a literal): repeat it as a whole
                let item = Array(seq[lastStart...])
                seq.removeSubrange(lastStart...)
                var lo = 0, hi: Int? = nil
                i += 1
                switch c {
                case "*": break
                case "+": lo = 1
                case "?": hi = 1
                default:
                    skipSpace(newlines: false)
                    lo = try number()
                    skipSpace(newlines: false)
                    if peek == "," {
                        i += 1
                        skipSpace(newlines: false)
                        hi = peek == "}" ? nil : try number()
                    } else { hi = lo }
                    skipSpace(newlines: false)
                    guard peek == "}" else { throw error("expected '}'") }
                    i += 1
                    if let h = hi, h < lo { throw error("repetition {\(lo),\(h)}: the maximum is below the minimum") }
                    if lo > 10_000 || (hi ?? 0) > 10_000 { throw error("repetition counts above 10000 are not supported") }
                }
                seq += repeated(item, min: lo, max: hi)
                lastStart = -1
                skipSpace(newlines: false)
                continue
            } else {
                throw error("unexpected '\(c)'")
            }
            lastStart = elementStart
            skipSpace(newlines: false)
        }
        return seq
    }

    /// `item` min to max times (max nil: unbounded), as rules.
    mutating func repeated(_ item: [GrammarBuilder.Symbol], min lo: Int, max hi: Int?) -> [GrammarBuilder.Symbol] {
        var out: [GrammarBuilder.Symbol] = []
        for _ in 0..<lo { out += item }
        if let hi {
            // up to hi - lo more: opt_k ::= item opt_{k-1} | ε
            var tail: Int32? = nil
            for _ in 0..<(hi - lo) {
                tail = builder.fresh("rep", [item + (tail.map { [.rule($0)] } ?? []), []])
            }
            if let tail { out.append(.rule(tail)) }
        } else {
            let star = builder.id("star_\(builder.names.count)")
            builder.define(star, [item + [.rule(star)], []])
            out.append(.rule(star))
        }
        return out
    }

    mutating func number() throws -> Int {
        let start = i
        while let c = peek, c >= "0" && c <= "9" { i += 1 }
        guard i > start, i - start < 7, let n = Int(String(String.UnicodeScalarView(text[start..<i]))) else { throw error("expected a count") }
        return n
    }

    /// One character of a string or class, escapes read.
    mutating func char() throws -> Unicode.Scalar {
        guard let c = peek else { throw error("unexpected end") }
        i += 1
        guard c == "\\" else { return c }
        guard let e = peek else { throw error("unterminated escape") }
        i += 1
        switch e {
        case "n": return "\n"
        case "r": return "\r"
        case "t": return "\t"
        case "b": return "\u{08}"
        case "f": return "\u{0C}"
        case "\\", "\"", "[", "]", "-", "^", "'", "/": return e
        case "x", "u", "U":
            let n = e == "x" ? 2 : e == "u" ? 4 : 8
            guard i + n <= text.count, let v = UInt32(String(String.UnicodeScalarView(text[i..<(i + n)])), radix: 16),
                  let s = Unicode.Scalar(v) else { throw error("bad \\\(e) escape") }
            i += n
            return s
        default: throw error("unknown escape '\\\(e)'")
        }
    }
}
