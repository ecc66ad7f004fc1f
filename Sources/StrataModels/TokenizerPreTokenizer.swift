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
    case split(regex: NSRegularExpression, behavior: Behavior, invert: Bool)
    case metaspace(replacement: String, prependScheme: String, split: Bool)
    case digits(individual: Bool)

    static let gpt2Pattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
    nonisolated(unsafe) static let gpt2Regex = try! NSRegularExpression(pattern: gpt2Pattern)

    static func parse(_ any: Any?, _ p: JSONPath) throws -> PreTokenizer? {
        guard let o = try p.component(any) else { return nil }
        let type = o["type"] as? String ?? ""
        switch type {
        case "Sequence":
            let items = (o["pretokenizers"] as? [Any]) ?? []
            return .sequence(try items.enumerated().compactMap { try parse($1, p.sub("pretokenizers.\($0)")) })
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: o["add_prefix_space"] as? Bool ?? true, useRegex: o["use_regex"] as? Bool ?? true)
        case "Split":
            let pat = o["pattern"] as? [String: Any]
            let regex: NSRegularExpression
            do {
                if let r = pat?["Regex"] as? String {
                    regex = try NSRegularExpression(pattern: r)
                } else if let s = pat?["String"] as? String {
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
            return .split(regex: regex, behavior: b, invert: o["invert"] as? Bool ?? false)
        case "Metaspace":
            let scheme = o["prepend_scheme"] as? String ?? ((o["add_prefix_space"] as? Bool ?? true) ? "always" : "never")
            guard ["always", "first", "never"].contains(scheme) else { throw p.sub("prepend_scheme").malformed("unknown '\(scheme)'") }
            return .metaspace(replacement: o["replacement"] as? String ?? "\u{2581}", prependScheme: scheme, split: o["split"] as? Bool ?? true)
        case "Digits":
            return .digits(individual: o["individual_digits"] as? Bool ?? false)
        default:
            throw p.unsupported(type)
        }
    }

    func apply(_ pieces: [PreToken]) -> [PreToken] {
        switch self {
        case let .sequence(ps):
            return ps.reduce(pieces) { $1.apply($0) }
        case let .byteLevel(addPrefixSpace, useRegex):
            return pieces.flatMap { piece -> [PreToken] in
                var t = piece
                if addPrefixSpace && !t.text.hasPrefix(" ") { t.text = " " + t.text }
                let parts = useRegex ? PreTokenizer.splitRegex(t, PreTokenizer.gpt2Regex, .isolated, invert: false) : [t]
                return parts.map { PreToken(text: ByteLevelAlphabet.encode($0.text), originalStart: $0.originalStart) }
            }
        case let .split(regex, behavior, invert):
            return pieces.flatMap { PreTokenizer.splitRegex($0, regex, behavior, invert: invert) }
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
            let re = try! NSRegularExpression(pattern: individual ? "\\p{N}" : "\\p{N}+")
            return pieces.flatMap { PreTokenizer.splitRegex($0, re, .isolated, invert: false) }
        }
    }

    /// Splits a piece by regex matches with a `tokenizers` SplitDelimiterBehavior.
    static func splitRegex(_ piece: PreToken, _ regex: NSRegularExpression, _ behavior: Behavior, invert: Bool) -> [PreToken] {
        let s = piece.text
        let ns = s as NSString
        // (range, isMatch) covering the whole string
        var spans: [(NSRange, Bool)] = []
        var last = 0
        for m in regex.matches(in: s, range: NSRange(location: 0, length: ns.length)) where m.range.length > 0 {
            if m.range.location > last { spans.append((NSRange(location: last, length: m.range.location - last), false)) }
            spans.append((m.range, true))
            last = m.range.location + m.range.length
        }
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
        return pieces.map { r in
            let prefixScalars = ns.substring(to: r.location).unicodeScalars.count
            return PreToken(text: ns.substring(with: r), originalStart: piece.originalStart + prefixScalars)
        }
    }
}
