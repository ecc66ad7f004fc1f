import Foundation
import StrataFormats

// MARK: - pre-tokenizers

struct PreToken {
    var text: String
    /// Offset of the piece in the original text, in Unicode scalars (Metaspace's "first").
    var originalStart: Int
}

indirect enum PreTokenizer {
    enum Behavior: String { case isolated = "Isolated", removed = "Removed", mergedWithPrevious = "MergedWithPrevious", mergedWithNext = "MergedWithNext", contiguous = "Contiguous" }
    case sequence([PreTokenizer])
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    /// `pattern`: the regex's source, as tokenizer.json gives it (named in errors)
    case split(regex: NSRegularExpression, pattern: String, behavior: Behavior, invert: Bool)
    case metaspace(replacement: String, prependScheme: String, split: Bool)
    case digits(individual: Bool)

    static let gpt2Pattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
    nonisolated(unsafe) static let gpt2Regex = try! NSRegularExpression(pattern: gpt2Pattern)

    static func parse(_ any: Any?, _ p: JSONPath) throws -> PreTokenizer? {
        guard let o = try p.component(any) else { return nil }
        let type = o["type"] as? String ?? ""
        switch type {
        case "Sequence":
            let items = try p.list(o, "pretokenizers")
            return .sequence(try items.enumerated().compactMap { try parse($1, p.sub("pretokenizers.\($0)")) })
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: try p.bool(o, "add_prefix_space") ?? true, useRegex: try p.bool(o, "use_regex") ?? true)
        case "Split":
            let pat = o["pattern"] as? [String: Any]
            let regex: NSRegularExpression
            let source: String
            do {
                if let r = pat?["Regex"] as? String {
                    source = r
                    regex = try NSRegularExpression(pattern: r)
                } else if let s = pat?["String"] as? String {
                    source = s
                    regex = try NSRegularExpression(pattern: NSRegularExpression.escapedPattern(for: s))
                } else {
                    throw p.sub("pattern").malformed("needs Regex or String")
                }
            } catch let e as TokenizerError { throw e } catch {
                throw p.sub("pattern").malformed("regex does not compile: \(error)")
            }
            guard let b = Behavior(rawValue: o["behavior"] as? String ?? "") else {
                throw p.sub("behavior").malformed("unknown behavior '\(o["behavior"] ?? "")'")
            }
            return .split(regex: regex, pattern: source, behavior: b, invert: try p.bool(o, "invert") ?? false)
        case "Metaspace":
            let scheme = try p.string(o, "prepend_scheme") ?? ((try p.bool(o, "add_prefix_space") ?? true) ? "always" : "never")
            guard ["always", "first", "never"].contains(scheme) else { throw p.sub("prepend_scheme").malformed("unknown '\(scheme)'") }
            return .metaspace(replacement: try p.string(o, "replacement") ?? "\u{2581}", prependScheme: scheme, split: try p.bool(o, "split") ?? true)
        case "Digits":
            return .digits(individual: try p.bool(o, "individual_digits") ?? false)
        default:
            throw p.unsupported(type)
        }
    }

    nonisolated(unsafe) static let digitsRegex = try! NSRegularExpression(pattern: "\\p{N}")
    nonisolated(unsafe) static let digitRunsRegex = try! NSRegularExpression(pattern: "\\p{N}+")

    /// Throws `TokenizerError.regexBudget` when a split regex works far beyond what the text's
    /// length calls for (catastrophic backtracking in a pattern from tokenizer.json).
    func apply(_ pieces: [PreToken]) throws -> [PreToken] {
        switch self {
        case let .sequence(ps):
            return try ps.reduce(pieces) { try $1.apply($0) }
        case let .byteLevel(addPrefixSpace, useRegex):
            return try pieces.flatMap { piece -> [PreToken] in
                var t = piece
                if addPrefixSpace && !t.text.hasPrefix(" ") { t.text = " " + t.text }
                let parts = useRegex ? try PreTokenizer.splitRegex(t, PreTokenizer.gpt2Regex, pattern: PreTokenizer.gpt2Pattern, .isolated, invert: false) : [t]
                return parts.map { PreToken(text: ByteLevelAlphabet.encode($0.text), originalStart: $0.originalStart) }
            }
        case let .split(regex, pattern, behavior, invert):
            return try pieces.flatMap { try PreTokenizer.splitRegex($0, regex, pattern: pattern, behavior, invert: invert) }
        case let .metaspace(replacement, scheme, split):
            return pieces.flatMap { piece -> [PreToken] in
                var s = piece.text.replacingOccurrences(of: " ", with: replacement)
                let prepend = scheme == "always" || (scheme == "first" && piece.originalStart == 0)
                if prepend && !s.hasPrefix(replacement) { s = replacement + s }
                guard split else { return [PreToken(text: s, originalStart: piece.originalStart)] }
                // split before each replacement char (MergedWithNext)
                var out: [PreToken] = []
                var cur = ""
                for ch in s {
                    if String(ch) == replacement && !cur.isEmpty { out.append(PreToken(text: cur, originalStart: piece.originalStart)); cur = "" }
                    cur.append(ch)
                }
                if !cur.isEmpty { out.append(PreToken(text: cur, originalStart: piece.originalStart)) }
                return out
            }
        case let .digits(individual):
            let re = individual ? PreTokenizer.digitsRegex : PreTokenizer.digitRunsRegex
            return try pieces.flatMap { try PreTokenizer.splitRegex($0, re, pattern: re.pattern, .isolated, invert: false) }
        }
    }

    /// The regex engine's progress reports (each some thousands of its steps) one split may take:
    /// a floor, then one per 256 UTF-16 units of text: some 20 times what the patterns tokenizers
    /// ship need (docs/robustness.md gives the measurement), while a pattern that backtracks
    /// catastrophically stops within a fraction of a second instead of running for hours.
    static func regexBudget(length: Int) -> Int { 256 + length / 256 }

    /// Splits a piece by regex matches with a `tokenizers` SplitDelimiterBehavior; linear in the
    /// piece (offsets counted as the spans go by) and bounded in the regex's work.
    static func splitRegex(_ piece: PreToken, _ regex: NSRegularExpression, pattern: String, _ behavior: Behavior, invert: Bool) throws -> [PreToken] {
        let s = piece.text
        let ns = s as NSString
        // (range, isMatch) covering the whole string
        var spans: [(NSRange, Bool)] = []
        var last = 0
        let budget = regexBudget(length: ns.length)
        var reports = 0
        regex.enumerateMatches(in: s, options: [.reportProgress], range: NSRange(location: 0, length: ns.length)) { m, _, stop in
            guard let m else {
                reports += 1
                if reports > budget { stop.pointee = true }
                return
            }
            guard m.range.length > 0 else { return }
            if m.range.location > last { spans.append((NSRange(location: last, length: m.range.location - last), false)) }
            spans.append((m.range, true))
            last = m.range.location + m.range.length
        }
        if reports > budget { throw TokenizerError.regexBudget(pattern: pattern, length: ns.length) }
        if last < ns.length { spans.append((NSRange(location: last, length: ns.length - last), false)) }
        if invert { spans = spans.map { ($0.0, !$0.1) } }
        var pieces: [NSRange] = []
        switch behavior {
        case .isolated: pieces = spans.map { $0.0 }
        case .removed: pieces = spans.filter { !$0.1 }.map { $0.0 }
        case .mergedWithPrevious:
            for (r, isMatch) in spans {
                if isMatch, let prev = pieces.last { pieces[pieces.count - 1] = NSRange(location: prev.location, length: prev.length + r.length) } else { pieces.append(r) }
            }
        case .mergedWithNext:
            var pending: NSRange? = nil
            for (r, isMatch) in spans {
                if isMatch { pending = pending.map { NSRange(location: $0.location, length: $0.length + r.length) } ?? r; continue }
                if let p = pending { pieces.append(NSRange(location: p.location, length: p.length + r.length)); pending = nil } else { pieces.append(r) }
            }
            if let p = pending { pieces.append(p) }
        case .contiguous:
            var prevMatch: Bool? = nil
            for (r, isMatch) in spans {
                if isMatch, prevMatch == true, let prev = pieces.last { pieces[pieces.count - 1] = NSRange(location: prev.location, length: prev.length + r.length) } else { pieces.append(r) }
                prevMatch = isMatch
            }
        }
        // scalar offsets: pieces come in order, so count only the text since the previous one
        var out: [PreToken] = []
        out.reserveCapacity(pieces.count)
        var at = 0, scalars = 0
        for r in pieces {
            if r.location > at { scalars += ns.substring(with: NSRange(location: at, length: r.location - at)).unicodeScalars.count; at = r.location }
            out.append(PreToken(text: ns.substring(with: r), originalStart: piece.originalStart + scalars))
        }
        return out
    }
}
