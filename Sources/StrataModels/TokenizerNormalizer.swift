import Foundation
import StrataFormats

// MARK: - normalizers

indirect enum Normalizer {
    case sequence([Normalizer])
    case prepend(String)
    case replace(pattern: String, content: String)
    case nfc, nfd, nfkc, nfkd, lowercase

    static func parse(_ any: Any?, _ p: JSONPath) throws -> Normalizer? {
        guard let o = try p.component(any) else { return nil }
        let type = o["type"] as? String ?? ""
        switch type {
        case "Sequence":
            let items = try p.list(o, "normalizers")
            return .sequence(try items.enumerated().compactMap { try parse($1, p.sub("normalizers.\($0)")) })
        case "Prepend":
            guard let s = o["prepend"] as? String else { throw p.sub("prepend").malformed("missing") }
            return .prepend(s)
        case "Replace":
            guard let pat = (o["pattern"] as? [String: Any])?["String"] as? String, let content = o["content"] as? String else {
                throw p.sub("pattern").malformed("only String patterns are supported")
            }
            return .replace(pattern: pat, content: content)
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        default: throw p.unsupported(type)
        }
    }

    func apply(_ s: String) -> String {
        switch self {
        case let .sequence(ns): return ns.reduce(s) { $1.apply($0) }
        case let .prepend(x): return s.isEmpty ? s : x + s
        case let .replace(pat, content): return s.replacingOccurrences(of: pat, with: content)
        case .nfc: return s.precomposedStringWithCanonicalMapping
        case .nfd: return s.decomposedStringWithCanonicalMapping
        case .nfkc: return s.precomposedStringWithCompatibilityMapping
        case .nfkd: return s.decomposedStringWithCompatibilityMapping
        case .lowercase: return s.lowercased()
        }
    }
}
