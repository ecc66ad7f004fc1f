import Foundation
import StrataFormats
import StrataTensor

/// Errors loading or using a `tokenizer.json`; each names the file and the field.
public enum TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    case malformed(file: String, field: String, reason: String)
    case unsupported(file: String, field: String, type: String)
    case unknownTokenID(id: Int, vocabSize: Int)
    /// A split regex worked past its budget on a text of `length` UTF-16 units.
    case regexBudget(pattern: String, length: Int)

    public var description: String {
        switch self {
        case let .regexBudget(pat, n):
            return "the tokenizer's split pattern \(pat.debugDescription) backtracked past its work budget on a text of \(n) UTF-16 units (a pattern that backtracks catastrophically; tokenizers' regex engine does not)"
        case let .malformed(f, field, r): return "\(f): field '\(field)': \(r)"
        case let .unsupported(f, field, t): return "\(f): field '\(field)': unsupported type '\(t)'"
        case let .unknownTokenID(id, n): return "token id \(id) not in the tokenizer (\(n) tokens)"
        }
    }
}

/// A Hugging Face `tokenizer.json` tokenizer: BPE with the byte-level pre-tokenizer (GPT-2,
/// Qwen2, Llama 3) or SentencePiece-style BPE with `▁` and byte fallback (Llama 2, TinyLlama,
/// Mistral); normalizers, pre-tokenizers, post-processors and decoders those use; added and
/// special tokens. Encoding and decoding follow `tokenizers` (checked against its output in tests).
public final class Tokenizer: @unchecked Sendable {
    public let file: String
    /// token string -> id (model vocab and added tokens)
    let vocab: [String: Int]
    /// id -> token string
    let idToToken: [Int: String]
    let model: BPEModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let postProcessor: PostProcessor?
    let decoder: TokenDecoder?
    let added: [AddedToken]
    /// ids of the added tokens (their text is their content, not the decoder's)
    let addedIDs: Set<Int>
    /// The added tokens matched on the raw text (`normalized: false`) and on the normalized text,
    /// each by its first scalar: a position of the text looks only at those that can start there.
    typealias AddedIndex = [Unicode.Scalar: [([Unicode.Scalar], AddedToken)]]
    let rawAdded: AddedIndex, normalizedAdded: AddedIndex
    /// ids of special added tokens
    public let specialIDs: Set<Int>
    /// The model's chat template (a GGUF's `tokenizer.chat_template`), when it came with one.
    public internal(set) var chatTemplate: String?

    struct AddedToken {
        let id: Int
        let content: String
        /// The text matched in the input: `content`, normalized when `normalized`.
        let pattern: String
        let special: Bool
        let normalized: Bool
        let lstrip: Bool
        let rstrip: Bool
        let singleWord: Bool
    }

    /// Ids above this are refused when a tokenizer is read (no vocabulary is that large, and
    /// `vocabSize` = largest id + 1 must not overflow).
    public static let maxID = 1 << 24

    /// Number of ids (largest id + 1).
    public var vocabSize: Int { (idToToken.keys.max() ?? -1) + 1 }

    /// The folder's tokenizer.json, with tokenizer_config.json's `add_bos_token: false` applied
    /// as transformers applies it (its Llama tokenizer rebuilds the post-processor without the
    /// BOS): the special tokens the post-processor puts before the text are dropped.
    public convenience init(directory: String) throws {
        try self.init(root: Tokenizer.folderRoot(directory: directory), file: (directory as NSString).appendingPathComponent("tokenizer.json"))
    }

    /// The decoded tokenizer.json of a folder with tokenizer_config.json's `add_bos_token` applied.
    static func folderRoot(directory: String) throws -> [String: Any] {
        let path = (directory as NSString).appendingPathComponent("tokenizer.json")
        guard let data = try FileIO.readSmallFile(path) else { throw ConfigError.missingFile(path: path) }
        guard var root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TokenizerError.malformed(file: path, field: "(document)", reason: "not a JSON object")
        }
        let configPath = (directory as NSString).appendingPathComponent("tokenizer_config.json")
        if let cdata = try FileIO.readSmallFile(configPath) {
            let cfg: JSONValue
            do { cfg = try JSONValue.parse(cdata) } catch {
                throw TokenizerError.malformed(file: configPath, field: "(document)", reason: "\(error)")
            }
            switch cfg["add_bos_token"] {
            case nil, .null?, .bool(true)?: break
            case .bool(false)?: if let pp = root["post_processor"] { root["post_processor"] = Tokenizer.withoutLeadingSpecials(pp) }
            case let v?: throw TokenizerError.malformed(file: configPath, field: "add_bos_token", reason: "expected true or false, got \(v.compact)")
            }
        }
        return root
    }

    /// A post-processor (tokenizer.json form) without the special tokens its templates put
    /// before the first sequence.
    static func withoutLeadingSpecials(_ pp: Any) -> Any {
        guard var o = pp as? [String: Any] else { return pp }
        switch o["type"] as? String {
        case "TemplateProcessing":
            for key in ["single", "pair"] {
                guard let items = o[key] as? [[String: Any]] else { continue }
                o[key] = Array(items.drop { $0["SpecialToken"] != nil })
            }
        case "Sequence":
            if let ps = o["processors"] as? [Any] { o["processors"] = ps.map(withoutLeadingSpecials) }
        default: break
        }
        return o
    }

    public convenience init(path: String) throws {
        guard let data = try FileIO.readSmallFile(path) else { throw ConfigError.missingFile(path: path) }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TokenizerError.malformed(file: path, field: "(document)", reason: "not a JSON object")
        }
        try self.init(root: root, file: path)
    }

    /// A tokenizer from the decoded `tokenizer.json` object (`file` names it in errors).
    public init(root: [String: Any], file path: String) throws {
        file = path
        let p = JSONPath(file: path)
        guard let modelObj = root["model"] as? [String: Any] else { throw TokenizerError.malformed(file: path, field: "model", reason: "missing") }
        model = try BPEModel(modelObj, p.sub("model"))
        normalizer = try Normalizer.parse(root["normalizer"], p.sub("normalizer"))
        preTokenizer = try PreTokenizer.parse(root["pre_tokenizer"], p.sub("pre_tokenizer"))
        postProcessor = try PostProcessor.parse(root["post_processor"], p.sub("post_processor"))
        decoder = try TokenDecoder.parse(root["decoder"], p.sub("decoder"))
        var vocab = model.vocab
        var idToToken = model.idToToken
        var added: [AddedToken] = []
        for (i, entry) in try p.list(root, "added_tokens").enumerated() {
            let f = p.sub("added_tokens.\(i)")
            guard let a = entry as? [String: Any] else { throw f.malformed("expected an object, got \(entry)") }
            guard let id = a["id"] as? Int, id >= 0, id < Tokenizer.maxID, let content = a["content"] as? String, !content.isEmpty else {
                throw TokenizerError.malformed(file: path, field: f.path, reason: "needs an integer id in 0..<\(Tokenizer.maxID) and non-empty content")
            }
            let special = try f.bool(a, "special") ?? false
            let normalized = try f.bool(a, "normalized") ?? !special
            let pattern = normalized ? (normalizer?.apply(content) ?? content) : content
            added.append(AddedToken(id: id, content: content, pattern: pattern, special: special, normalized: normalized,
                                    lstrip: try f.bool(a, "lstrip") ?? false, rstrip: try f.bool(a, "rstrip") ?? false,
                                    singleWord: try f.bool(a, "single_word") ?? false))
            vocab[pattern] = id
            idToToken[id] = pattern
        }
        self.vocab = vocab
        self.idToToken = idToToken
        self.added = added
        addedIDs = Set(added.map(\.id))
        func index(_ tokens: [AddedToken]) -> AddedIndex {
            var byFirst: AddedIndex = [:]
            for t in tokens {
                let pat = Array(t.pattern.unicodeScalars)
                if let f = pat.first { byFirst[f, default: []].append((pat, t)) }
            }
            return byFirst
        }
        rawAdded = index(added.filter { !$0.normalized })
        normalizedAdded = index(added.filter { $0.normalized })
        specialIDs = Set(added.filter { $0.special }.map { $0.id })
        try postProcessor?.resolve(vocab: vocab, vocabSize: (idToToken.keys.max() ?? -1) + 1, p.sub("post_processor"))
    }

    public func id(of token: String) -> Int? { vocab[token] }
    public func token(of id: Int) -> String? { idToToken[id] }

    // MARK: encode

    /// Token ids of `text`. With `addSpecialTokens` the post-processor adds its tokens (BOS for
    /// Llama), as `tokenizers`' `encode(text)` does by default.
    /// Throws `TokenizerError.regexBudget` when the tokenizer's split pattern backtracks past its
    /// budget (linear in the text's length).
    public func encode(_ text: String, addSpecialTokens: Bool = true) throws -> [Int] {
        var ids: [Int] = []
        // 1. split the raw text on added tokens matched before normalization
        for seg in splitAdded(text, tokens: rawAdded, originalStart: 0) {
            switch seg {
            case let .token(id): ids.append(id)
            case let .text(s, offset):
                // 2. normalize, 3. split on added tokens matched after normalization
                let n = normalizer?.apply(s) ?? s
                for seg2 in splitAdded(n, tokens: normalizedAdded, originalStart: offset) {
                    switch seg2 {
                    case let .token(id): ids.append(id)
                    case let .text(piece, off):
                        // 4. pre-tokenize, 5. BPE each word
                        let words = try preTokenizer?.apply([PreToken(text: piece, originalStart: off)]) ?? [PreToken(text: piece, originalStart: off)]
                        for w in words where !w.text.isEmpty { model.encode(w.text, into: &ids) }
                    }
                }
            }
        }
        if addSpecialTokens, let pp = postProcessor { ids = pp.process(ids) }
        return ids
    }

    enum Segment { case text(String, offset: Int), token(Int) }

    /// Splits `text` at occurrences of `tokens` (leftmost, longest), honouring lstrip/rstrip/single_word.
    func splitAdded(_ text: String, tokens byFirst: AddedIndex, originalStart: Int) -> [Segment] {
        if byFirst.isEmpty || text.isEmpty { return text.isEmpty ? [] : [.text(text, offset: originalStart)] }
        let chars = Array(text.unicodeScalars)
        var out: [Segment] = []
        var segStart = 0
        var i = 0
        func isWordChar(_ c: Unicode.Scalar) -> Bool { c.properties.isAlphabetic || c.properties.numericType != nil || c == "_" }
        while i < chars.count {
            var best: (len: Int, tok: AddedToken)? = nil
            guard let patterns = byFirst[chars[i]] else { i += 1; continue }
            for (pat, tok) in patterns where pat.count <= chars.count - i && (best == nil || pat.count > best!.len) {
                var ok = true
                for j in 0..<pat.count where chars[i + j] != pat[j] { ok = false; break }
                if ok && tok.singleWord {
                    if i > 0 && isWordChar(chars[i - 1]) { ok = false }
                    if i + pat.count < chars.count && isWordChar(chars[i + pat.count]) { ok = false }
                }
                if ok { best = (pat.count, tok) }
            }
            guard let b = best else { i += 1; continue }
            var lo = i, hi = i + b.len
            if b.tok.lstrip { while lo > segStart && chars[lo - 1].properties.isWhitespace { lo -= 1 } }
            if b.tok.rstrip { while hi < chars.count && chars[hi].properties.isWhitespace { hi += 1 } }
            if lo > segStart {
                out.append(.text(String(String.UnicodeScalarView(chars[segStart..<lo])), offset: originalStart + segStart))
            }
            out.append(.token(b.tok.id))
            segStart = hi
            i = hi
        }
        if segStart < chars.count {
            out.append(.text(String(String.UnicodeScalarView(chars[segStart...])), offset: originalStart + segStart))
        }
        return out
    }

    // MARK: decode

    /// The bytes token `id` adds to a text after its first token (nil: a special token, or an id
    /// the tokenizer does not know). Used to match tokens against a grammar.
    public func bytes(of id: Int) -> [UInt8]? {
        guard let t = idToToken[id], !specialIDs.contains(id) else { return nil }
        guard let decoder else { return Array(t.utf8) }
        if addedIDs.contains(id) { return Array(t.utf8) }
        return decoder.bytes(of: t)
    }

    /// Text of `ids`, as `tokenizers`' `decode` (special tokens kept unless `skipSpecialTokens`).
    /// Ids the tokenizer does not know (a model's padded vocabulary) are skipped, as `tokenizers`
    /// does; with `strict` they are an error naming the id.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false, strict: Bool = false) throws -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard let t = idToToken[id] else {
                if strict { throw TokenizerError.unknownTokenID(id: id, vocabSize: vocabSize) }
                continue
            }
            if skipSpecialTokens && specialIDs.contains(id) { continue }
            tokens.append(t)
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decode(tokens).joined()
    }
}

/// Decodes a stream of token ids into text pieces that are always whole UTF-8 characters: a
/// token that ends mid-character (byte fallback, byte-level) waits for the rest. The
/// concatenation of the pieces equals `decode(allIDs)`.
public struct StreamingDecoder {
    let tokenizer: Tokenizer
    let skipSpecialTokens: Bool
    var ids: [Int] = []
    var prefixOffset = 0
    var readOffset = 0

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = true) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one token; returns the new text it completes (possibly empty).
    public mutating func push(_ id: Int) throws -> String {
        ids.append(id)
        let prefix = try tokenizer.decode(Array(ids[prefixOffset..<readOffset]), skipSpecialTokens: skipSpecialTokens)
        let full = try tokenizer.decode(Array(ids[prefixOffset...]), skipSpecialTokens: skipSpecialTokens)
        if let new = StreamingDecoder.suffix(full, after: prefix), !new.isEmpty, full.unicodeScalars.last != "\u{FFFD}" {
            prefixOffset = readOffset
            readOffset = ids.count
            return new
        }
        return ""
    }

    /// Text still held back at the end of the stream (an incomplete character becomes U+FFFD).
    public mutating func finish() throws -> String {
        let prefix = try tokenizer.decode(Array(ids[prefixOffset..<readOffset]), skipSpecialTokens: skipSpecialTokens)
        let full = try tokenizer.decode(Array(ids[prefixOffset...]), skipSpecialTokens: skipSpecialTokens)
        prefixOffset = ids.count
        readOffset = ids.count
        return StreamingDecoder.suffix(full, after: prefix) ?? ""
    }

    /// `full` minus its byte prefix `prefix`, or nil when `prefix` is not a byte prefix of `full`.
    static func suffix(_ full: String, after prefix: String) -> String? {
        let f = Array(full.utf8), p = Array(prefix.utf8)
        guard f.count >= p.count, f[0..<p.count].elementsEqual(p) else { return nil }
        return String(decoding: f[p.count...], as: UTF8.self)
    }
}

/// A dotted field path inside a JSON file, for error messages.
struct JSONPath {
    let file: String
    var path: String = ""
    func sub(_ k: String) -> JSONPath { JSONPath(file: file, path: path.isEmpty ? k : path + "." + k) }
    func malformed(_ reason: String) -> TokenizerError { .malformed(file: file, field: path, reason: reason) }
    func unsupported(_ type: String) -> TokenizerError { .unsupported(file: file, field: path + ".type", type: type) }
    /// A pipeline component's JSON object; nil when absent or null, an error when not an object.
    func component(_ any: Any?) throws -> [String: Any]? {
        if let o = any as? [String: Any] { return o }
        if any == nil || any is NSNull { return nil }
        throw malformed("not an object")
    }

    /// `o[key]` as a boolean: nil when absent or null; a string, number or anything else is an
    /// error naming the field (tokenizers' serde refuses it; reading it as false would be silent).
    func bool(_ o: [String: Any], _ key: String) throws -> Bool? {
        guard let v = o[key], !(v is NSNull) else { return nil }
        if let n = v as? NSNumber, String(cString: n.objCType) == "c" { return n.boolValue }
        if let b = v as? Bool, !(v is NSNumber) { return b }
        throw sub(key).malformed("expected true or false, got \(v)")
    }

    /// `o[key]` as a string: nil when absent or null, an error when another type.
    func string(_ o: [String: Any], _ key: String) throws -> String? {
        guard let v = o[key], !(v is NSNull) else { return nil }
        guard let s = v as? String else { throw sub(key).malformed("expected a string, got \(v)") }
        return s
    }

    /// `o[key]` as a list: empty when absent or null, an error when another type (an object
    /// where a list belongs would otherwise drop the whole component in silence).
    func list(_ o: [String: Any], _ key: String) throws -> [Any] {
        guard let v = o[key], !(v is NSNull) else { return [] }
        guard let a = v as? [Any] else { throw sub(key).malformed("expected a list, got \(type(of: v))") }
        return a
    }
}
