import Foundation
import StrataFormats

// MARK: - post-processors

indirect enum PostProcessor {
    enum Item { case special(String), sequence }
    case template([Item], ids: [String: [Int]])
    case byteLevel
    case sequence([PostProcessor])
    case bert(cls: Int, sep: Int)

    static func parse(_ any: Any?, _ p: JSONPath) throws -> PostProcessor? {
        guard let o = try p.component(any) else { return nil }
        let type = o["type"] as? String ?? ""
        switch type {
        case "TemplateProcessing":
            guard let single = o["single"] as? [[String: Any]] else { throw p.sub("single").malformed("missing, or not a list of objects") }
            var items: [Item] = []
            for (i, it) in single.enumerated() {
                if let sp = it["SpecialToken"] as? [String: Any], let id = sp["id"] as? String { items.append(.special(id)) }
                else if it["Sequence"] != nil { items.append(.sequence) }
                else { throw p.sub("single.\(i)").malformed("neither SpecialToken nor Sequence") }
            }
            var ids: [String: [Int]] = [:]
            if let st = o["special_tokens"], !(st is NSNull), !(st is [String: Any]) { throw p.sub("special_tokens").malformed("expected an object") }
            for (k, v) in (o["special_tokens"] as? [String: Any]) ?? [:] {
                guard let list = (v as? [String: Any])?["ids"] as? [Int] else { throw p.sub("special_tokens.\(k).ids").malformed("expected a list of integer ids") }
                if let bad = list.first(where: { $0 < 0 || $0 >= Tokenizer.maxID }) {
                    throw p.sub("special_tokens.\(k).ids").malformed("id \(bad) outside 0..<\(Tokenizer.maxID)")
                }
                ids[k] = list
            }
            return .template(items, ids: ids)
        case "ByteLevel": return .byteLevel
        case "Sequence":
            let items = try p.list(o, "processors")
            return .sequence(try items.enumerated().compactMap { try parse($1, p.sub("processors.\($0)")) })
        case "BertProcessing", "RobertaProcessing":
            guard let cls = (o["cls"] as? [Any])?.last as? Int, let sep = (o["sep"] as? [Any])?.last as? Int else {
                throw p.malformed("cls/sep missing")
            }
            return .bert(cls: cls, sep: sep)
        default: throw p.unsupported(type)
        }
    }

    /// Every token the post-processor adds exists: a name the template uses has an id, and
    /// every id is one of the tokenizer's (tokenizers refuses both).
    func resolve(vocab: [String: Int], vocabSize: Int, _ p: JSONPath) throws {
        switch self {
        case let .template(items, ids):
            for case let .special(name) in items where ids[name] == nil && vocab[name] == nil {
                throw p.sub("special_tokens").malformed("template names '\(name)' which has no id")
            }
            for (name, list) in ids {
                if let bad = list.first(where: { $0 >= vocabSize }) {
                    throw p.sub("special_tokens.\(name).ids").malformed("id \(bad) is not in the vocabulary (0..<\(vocabSize))")
                }
            }
        case let .sequence(ps):
            for (i, q) in ps.enumerated() { try q.resolve(vocab: vocab, vocabSize: vocabSize, p.sub("processors.\(i)")) }
        case let .bert(cls, sep):
            for (f, id) in [("cls", cls), ("sep", sep)] where id < 0 || id >= vocabSize {
                throw p.sub(f).malformed("id \(id) is not in the vocabulary (0..<\(vocabSize))")
            }
        case .byteLevel: break
        }
    }

    func process(_ ids: [Int]) -> [Int] {
        switch self {
        case let .template(items, special):
            var out: [Int] = []
            for it in items {
                switch it {
                case let .special(name): out.append(contentsOf: special[name] ?? [])
                case .sequence: out.append(contentsOf: ids)
                }
            }
            return out
        case .byteLevel: return ids
        case let .sequence(ps): return ps.reduce(ids) { $1.process($0) }
        case let .bert(cls, sep): return [cls] + ids + [sep]
        }
    }
}
