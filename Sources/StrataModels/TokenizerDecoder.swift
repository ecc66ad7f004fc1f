import Foundation
import StrataFormats

// MARK: - decoders

indirect enum TokenDecoder {
    case sequence([TokenDecoder])
    case byteLevel
    case replace(pattern: String, content: String)
    case byteFallback
    case fuse
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    case metaspace(replacement: String, prependScheme: String)

    static func parse(_ any: Any?, _ p: JSONPath) throws -> TokenDecoder? {
        guard let o = try p.component(any) else { return nil }
        let type = o["type"] as? String ?? ""
        switch type {
        case "Sequence":
            let items = try p.list(o, "decoders")
            return .sequence(try items.enumerated().compactMap { try parse($1, p.sub("decoders.\($0)")) })
        case "ByteLevel": return .byteLevel
        case "Replace":
            guard let pat = (o["pattern"] as? [String: Any])?["String"] as? String, let content = o["content"] as? String else {
                throw p.sub("pattern").malformed("only String patterns are supported")
            }
            return .replace(pattern: pat, content: content)
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Strip":
            guard let c = (o["content"] as? String)?.unicodeScalars.first else { throw p.sub("content").malformed("missing") }
            return .strip(content: c, start: o["start"] as? Int ?? 0, stop: o["stop"] as? Int ?? 0)
        case "Metaspace":
            let scheme = try p.string(o, "prepend_scheme") ?? ((try p.bool(o, "add_prefix_space") ?? true) ? "always" : "never")
            return .metaspace(replacement: try p.string(o, "replacement") ?? "\u{2581}", prependScheme: scheme)
        default: throw p.unsupported(type)
        }
    }

    func decode(_ tokens: [String]) -> [String] {
        switch self {
        case let .sequence(ds): return ds.reduce(tokens) { $1.decode($0) }
        case .byteLevel:
            var bytes: [UInt8] = []
            for t in tokens {
                for ch in t {
                    if let b = ByteLevelAlphabet.charToByte[ch] { bytes.append(b) } else { bytes.append(contentsOf: Array(String(ch).utf8)) }
                }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case let .replace(pat, content):
            return tokens.map { $0.replacingOccurrences(of: pat, with: content) }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                if pending.isEmpty { return }
                if let s = String(validating: pending, as: UTF8.self) { out.append(s) }
                else { out.append(String(repeating: "\u{FFFD}", count: pending.count)) }
                pending = []
            }
            for t in tokens {
                if t.count == 6, t.hasPrefix("<0x"), t.hasSuffix(">"), let b = UInt8(t.dropFirst(3).prefix(2), radix: 16) {
                    pending.append(b)
                } else {
                    flush(); out.append(t)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case let .strip(c, start, stop):
            // by Unicode scalar, as tokenizers strips chars (a space and a combining mark after it
            // are one Swift Character)
            return tokens.map { t in
                var chars = Array(t.unicodeScalars)
                var s = 0
                while s < start && s < chars.count && chars[s] == c { s += 1 }
                chars.removeFirst(s)
                var e = 0
                while e < stop && !chars.isEmpty && chars[chars.count - 1] == c { chars.removeLast(); e += 1 }
                var out = String.UnicodeScalarView()
                out.append(contentsOf: chars)
                return String(out)
            }
        case let .metaspace(replacement, scheme):
            return tokens.enumerated().map { i, t in
                var s = t.replacingOccurrences(of: replacement, with: " ")
                if i == 0 && scheme != "never" && s.unicodeScalars.first == " " { s = String(s.unicodeScalars.dropFirst()) }
                return s
            }
        }
    }
}

extension TokenDecoder {
    /// The bytes one token adds to the text when it is not the first (so a leading-space strip
    /// of the first token does not apply): a byte-level or byte-fallback token gives its raw
    /// byte, which may be part of a character. Used to match tokens against a grammar.
    func bytes(of token: String) -> [UInt8] {
        var fused = false
        var piece = Piece.text(token)
        apply(&piece, fused: &fused)
        switch piece {
        case let .text(t): return Array(t.utf8)
        case let .raw(b): return b
        }
    }

    enum Piece { case text(String), raw([UInt8]) }

    private func apply(_ piece: inout Piece, fused: inout Bool) {
        guard case let .text(t) = piece else { return }
        switch self {
        case let .sequence(ds): for d in ds { d.apply(&piece, fused: &fused) }
        case .byteLevel:
            var bytes: [UInt8] = []
            for ch in t {
                if let b = ByteLevelAlphabet.charToByte[ch] { bytes.append(b) } else { bytes.append(contentsOf: Array(String(ch).utf8)) }
            }
            piece = .raw(bytes)
        case let .replace(pat, content): piece = .text(t.replacingOccurrences(of: pat, with: content))
        case .byteFallback:
            if t.count == 6, t.hasPrefix("<0x"), t.hasSuffix(">"), let b = UInt8(t.dropFirst(3).prefix(2), radix: 16) { piece = .raw([b]) }
        case .fuse: fused = true
        case .strip:
            // applied to each token before a Fuse, to the joined text after it (its start only)
            if !fused { piece = .text(decode([t]).first ?? t) }
        case let .metaspace(replacement, _): piece = .text(t.replacingOccurrences(of: replacement, with: " "))
        }
    }
}

/// GPT-2's byte <-> character map, for tools that build byte-level vocabularies.
public enum ByteLevelAlphabetPublic {
    public static var byteToChar: [Character] { ByteLevelAlphabet.byteToChar }
}
