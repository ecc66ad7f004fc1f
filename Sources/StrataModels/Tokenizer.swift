import Foundation
import StrataFormats

/// Errors loading or using a `tokenizer.json`; each names the file and the field.
public enum TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    case malformed(file: String, field: String, reason: String)
    case unsupported(file: String, field: String, type: String)
    case unknownTokenID(id: Int, vocabSize: Int)

    public var description: String {
        switch self {
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
    /// ids of special added tokens
    public let specialIDs: Set<Int>

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

    /// Number of ids (largest id + 1).
    public var vocabSize: Int { (idToToken.keys.max() ?? -1) + 1 }

    public convenience init(directory: String) throws {
        try self.init(path: (directory as NSString).appendingPathComponent("tokenizer.json"))
    }

    public init(path: String) throws {
        file = path
        guard let data = FileManager.default.contents(atPath: path) else { throw ConfigError.missingFile(path: path) }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TokenizerError.malformed(file: path, field: "(document)", reason: "not a JSON object")
        }
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
        for (i, a) in ((root["added_tokens"] as? [[String: Any]]) ?? []).enumerated() {
            let f = p.sub("added_tokens.\(i)")
            guard let id = a["id"] as? Int, let content = a["content"] as? String, !content.isEmpty else {
                throw TokenizerError.malformed(file: path, field: f.path, reason: "needs an integer id and non-empty content")
            }
            let special = a["special"] as? Bool ?? false
            let normalized = a["normalized"] as? Bool ?? !special
            let pattern = normalized ? (normalizer?.apply(content) ?? content) : content
            added.append(AddedToken(id: id, content: content, pattern: pattern, special: special, normalized: normalized,
                                    lstrip: a["lstrip"] as? Bool ?? false, rstrip: a["rstrip"] as? Bool ?? false,
                                    singleWord: a["single_word"] as? Bool ?? false))
            vocab[pattern] = id
            idToToken[id] = pattern
        }
        self.vocab = vocab
        self.idToToken = idToToken
        self.added = added
        specialIDs = Set(added.filter { $0.special }.map { $0.id })
        try postProcessor?.resolve(vocab: vocab, p.sub("post_processor"))
    }

    public func id(of token: String) -> Int? { vocab[token] }
    public func token(of id: Int) -> String? { idToToken[id] }

    // MARK: encode

    /// Token ids of `text`. With `addSpecialTokens` the post-processor adds its tokens (BOS for
    /// Llama), as `tokenizers`' `encode(text)` does by default.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        var ids: [Int] = []
        // 1. split the raw text on added tokens matched before normalization
        for seg in splitAdded(text, tokens: added.filter { !$0.normalized }, originalStart: 0) {
            switch seg {
            case let .token(id): ids.append(id)
            case let .text(s, offset):
                // 2. normalize, 3. split on added tokens matched after normalization
                let n = normalizer?.apply(s) ?? s
                for seg2 in splitAdded(n, tokens: added.filter { $0.normalized }, originalStart: offset) {
                    switch seg2 {
                    case let .token(id): ids.append(id)
                    case let .text(piece, off):
                        // 4. pre-tokenize, 5. BPE each word
                        let words = preTokenizer?.apply([PreToken(text: piece, originalStart: off)]) ?? [PreToken(text: piece, originalStart: off)]
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
    func splitAdded(_ text: String, tokens: [AddedToken], originalStart: Int) -> [Segment] {
        if tokens.isEmpty || text.isEmpty { return text.isEmpty ? [] : [.text(text, offset: originalStart)] }
        let chars = Array(text.unicodeScalars)
        let patterns = tokens.map { (Array($0.pattern.unicodeScalars), $0) }
        var out: [Segment] = []
        var segStart = 0
        var i = 0
        func isWordChar(_ c: Unicode.Scalar) -> Bool { c.properties.isAlphabetic || c.properties.numericType != nil || c == "_" }
        while i < chars.count {
            var best: (len: Int, tok: AddedToken)? = nil
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
}

// MARK: - byte-level alphabet

/// GPT-2's reversible byte <-> printable character map.
enum ByteLevelAlphabet {
    static let byteToChar: [Character] = {
        var bs: [Int] = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) { bs.append(b); cs.append(256 + n); n += 1 }
        var table = [Character](repeating: " ", count: 256)
        for (b, c) in zip(bs, cs) { table[b] = Character(Unicode.Scalar(UInt32(c))!) }
        return table
    }()
    static let charToByte: [Character: UInt8] = {
        var m: [Character: UInt8] = [:]
        for (b, c) in byteToChar.enumerated() { m[c] = UInt8(b) }
        return m
    }()

    static func encode(_ s: String) -> String {
        var out = String()
        out.reserveCapacity(s.utf8.count)
        for b in s.utf8 { out.append(byteToChar[Int(b)]) }
        return out
    }
}

// MARK: - model

/// Byte-pair encoding over a vocab and ranked merges, with byte fallback, unk fusing and
/// `ignore_merges` (whole words in the vocab are taken as they are).
struct BPEModel {
    let vocab: [String: Int]
    let idToToken: [Int: String]
    /// (left id, right id) -> (rank, merged id)
    let merges: [UInt64: (rank: Int, id: Int)]
    let unkID: Int?
    let byteFallback: Bool
    let fuseUnk: Bool
    let ignoreMerges: Bool
    /// ids of <0x00> ... <0xFF>, when byte fallback is on
    let byteIDs: [Int?]

    init(_ o: [String: Any], _ p: JSONPath) throws {
        let type = o["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw p.unsupported(type) }
        guard let v = o["vocab"] as? [String: Any] else { throw p.sub("vocab").malformed("missing or not an object") }
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(v.count)
        var idToToken: [Int: String] = [:]
        for (k, idAny) in v {
            guard let id = idAny as? Int, id >= 0 else { throw p.sub("vocab").malformed("token '\(k)' has no valid id") }
            vocab[k] = id
            idToToken[id] = k
        }
        var merges: [UInt64: (Int, Int)] = [:]
        for (rank, m) in ((o["merges"] as? [Any]) ?? []).enumerated() {
            let pair: [String]
            if let s = m as? String {
                let parts = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                pair = parts.map(String.init)
            } else if let a = m as? [String] {
                pair = a
            } else {
                throw p.sub("merges.\(rank)").malformed("not a merge pair")
            }
            guard pair.count == 2, let a = vocab[pair[0]], let b = vocab[pair[1]], let ab = vocab[pair[0] + pair[1]] else {
                throw p.sub("merges.\(rank)").malformed("merge \(pair) names tokens not in the vocab")
            }
            let key = UInt64(a) << 32 | UInt64(b)
            if merges[key] == nil { merges[key] = (rank, ab) }
        }
        if o["dropout"] is Double { throw p.sub("dropout").malformed("BPE dropout is not supported for inference") }
        if let prefix = o["continuing_subword_prefix"] as? String, !prefix.isEmpty { throw p.sub("continuing_subword_prefix").malformed("not supported") }
        if let suffix = o["end_of_word_suffix"] as? String, !suffix.isEmpty { throw p.sub("end_of_word_suffix").malformed("not supported") }
        self.vocab = vocab
        self.idToToken = idToToken
        self.merges = merges
        unkID = (o["unk_token"] as? String).flatMap { vocab[$0] }
        byteFallback = o["byte_fallback"] as? Bool ?? false
        fuseUnk = o["fuse_unk"] as? Bool ?? false
        ignoreMerges = o["ignore_merges"] as? Bool ?? false
        byteIDs = (0..<256).map { vocab[String(format: "<0x%02X>", $0)] }
    }

    func encode(_ word: String, into out: inout [Int]) {
        if ignoreMerges, let id = vocab[word] { out.append(id); return }
        var symbols: [Int] = []
        symbols.reserveCapacity(word.unicodeScalars.count)
        var lastWasUnk = false
        for ch in word {
            if let id = vocab[String(ch)] {
                symbols.append(id); lastWasUnk = false
            } else if byteFallback, case let ids = String(ch).utf8.map({ byteIDs[Int($0)] }), ids.allSatisfy({ $0 != nil }) {
                symbols.append(contentsOf: ids.map { $0! }); lastWasUnk = false
            } else if let unk = unkID {
                if !(fuseUnk && lastWasUnk) { symbols.append(unk) }
                lastWasUnk = true
            }
            // no unk token: the character is dropped, as tokenizers does
        }
        // merge the lowest-ranked adjacent pair (leftmost on ties) until none is left
        while symbols.count > 1 {
            var bestRank = Int.max, bestPos = -1, bestID = 0
            for i in 0..<(symbols.count - 1) {
                if let m = merges[UInt64(symbols[i]) << 32 | UInt64(symbols[i + 1])], m.rank < bestRank {
                    bestRank = m.rank; bestPos = i; bestID = m.id
                }
            }
            if bestPos < 0 { break }
            symbols[bestPos] = bestID
            symbols.remove(at: bestPos + 1)
        }
        out.append(contentsOf: symbols)
    }
}

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
            let items = (o["normalizers"] as? [Any]) ?? []
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
            guard let single = o["single"] as? [[String: Any]] else { throw p.sub("single").malformed("missing") }
            var items: [Item] = []
            for (i, it) in single.enumerated() {
                if let sp = it["SpecialToken"] as? [String: Any], let id = sp["id"] as? String { items.append(.special(id)) }
                else if it["Sequence"] != nil { items.append(.sequence) }
                else { throw p.sub("single.\(i)").malformed("neither SpecialToken nor Sequence") }
            }
            var ids: [String: [Int]] = [:]
            for (k, v) in (o["special_tokens"] as? [String: Any]) ?? [:] {
                ids[k] = ((v as? [String: Any])?["ids"] as? [Int]) ?? []
            }
            return .template(items, ids: ids)
        case "ByteLevel": return .byteLevel
        case "Sequence":
            let items = (o["processors"] as? [Any]) ?? []
            return .sequence(try items.enumerated().compactMap { try parse($1, p.sub("processors.\($0)")) })
        case "BertProcessing", "RobertaProcessing":
            guard let cls = (o["cls"] as? [Any])?.last as? Int, let sep = (o["sep"] as? [Any])?.last as? Int else {
                throw p.malformed("cls/sep missing")
            }
            return .bert(cls: cls, sep: sep)
        default: throw p.unsupported(type)
        }
    }

    func resolve(vocab: [String: Int], _ p: JSONPath) throws {
        if case let .template(items, ids) = self {
            for case let .special(name) in items where ids[name] == nil && vocab[name] == nil {
                throw p.sub("special_tokens").malformed("template names '\(name)' which has no id")
            }
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

// MARK: - decoders

indirect enum TokenDecoder {
    case sequence([TokenDecoder])
    case byteLevel
    case replace(pattern: String, content: String)
    case byteFallback
    case fuse
    case strip(content: Character, start: Int, stop: Int)
    case metaspace(replacement: String, prependScheme: String)

    static func parse(_ any: Any?, _ p: JSONPath) throws -> TokenDecoder? {
        guard let o = try p.component(any) else { return nil }
        let type = o["type"] as? String ?? ""
        switch type {
        case "Sequence":
            let items = (o["decoders"] as? [Any]) ?? []
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
            guard let c = (o["content"] as? String)?.first else { throw p.sub("content").malformed("missing") }
            return .strip(content: c, start: o["start"] as? Int ?? 0, stop: o["stop"] as? Int ?? 0)
        case "Metaspace":
            let scheme = o["prepend_scheme"] as? String ?? ((o["add_prefix_space"] as? Bool ?? true) ? "always" : "never")
            return .metaspace(replacement: o["replacement"] as? String ?? "\u{2581}", prependScheme: scheme)
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
            return tokens.map { t in
                var chars = Array(t)
                var s = 0
                while s < start && s < chars.count && chars[s] == c { s += 1 }
                chars.removeFirst(s)
                var e = 0
                while e < stop && !chars.isEmpty && chars[chars.count - 1] == c { chars.removeLast(); e += 1 }
                return String(chars)
            }
        case let .metaspace(replacement, scheme):
            return tokens.enumerated().map { i, t in
                var s = t.replacingOccurrences(of: replacement, with: " ")
                if i == 0 && scheme != "never" && s.hasPrefix(" ") { s.removeFirst() }
                return s
            }
        }
    }
}

/// GPT-2's byte <-> character map, for tools that build byte-level vocabularies.
public enum ByteLevelAlphabetPublic {
    public static var byteToChar: [Character] { ByteLevelAlphabet.byteToChar }
}
