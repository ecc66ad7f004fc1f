import Foundation
import StrataFormats

/// The tokenizer of a GGUF file, rebuilt from `tokenizer.ggml.*` as the `tokenizer.json` the
/// same model ships on Hugging Face, then loaded by `Tokenizer`:
///
/// - `tokenizer.ggml.model = gpt2` (byte-level BPE: GPT-2, Llama 3, Qwen2): the tokens are the
///   vocab, `tokenizer.ggml.merges` the ranked merges, `tokenizer.ggml.pre` names the split
///   regex (`llama-bpe`, `qwen2`, `gpt-2`, ...); CONTROL (3) and USER_DEFINED (4) tokens become
///   added tokens (special for CONTROL).
/// - `tokenizer.ggml.model = llama` (SentencePiece BPE: Llama 2, TinyLlama, Mistral): `▁` for
///   spaces, a `▁` prepended, byte fallback through the BYTE (6) tokens `<0xXX>`; SentencePiece
///   merges the adjacent pair whose joined piece has the highest score, so the merges are
///   every split of every piece into two pieces, ranked by the joined piece's score.
/// - `tokenizer.ggml.add_bos_token` (default true for `llama`, false for `gpt2`) puts BOS first.
///
/// `tokenizer.chat_template` is kept (`chatTemplate`).
public enum GGUFTokenizer {
    /// Token types of `tokenizer.ggml.token_type` (llama.cpp's llama_token_type).
    enum TokenType: Int { case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6 }

    /// The split regex of each `tokenizer.ggml.pre` name Strata knows (llama.cpp's llama-vocab.cpp).
    static let preTokenizerPatterns: [String: String] = [
        "llama-bpe": #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        "qwen2": #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        "gpt-2": #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#,
    ]
    static let preTokenizerAliases: [String: String] = ["llama3": "llama-bpe", "gpt2": "gpt-2", "default": "gpt-2", "smollm": "gpt-2"]

    /// The file's tokenizer, or nil when it has no `tokenizer.ggml.model`.
    public static func load(_ file: GGUFFile) throws -> Tokenizer? {
        guard let model = try file.string("tokenizer.ggml.model") else { return nil }
        guard let tokens = try file.strings("tokenizer.ggml.tokens") else { throw GGUFError.missingKey(file: file.path, key: "tokenizer.ggml.tokens") }
        let types = try file.ints("tokenizer.ggml.token_type") ?? []
        if !types.isEmpty && types.count != tokens.count {
            throw GGUFError.invalid(file: file.path, field: "tokenizer.ggml.token_type", reason: "\(types.count) types for \(tokens.count) tokens")
        }
        func type(_ i: Int) -> TokenType { i < types.count ? TokenType(rawValue: types[i]) ?? .normal : .normal }
        func tokenID(_ key: String) throws -> Int? {
            guard let id = try file.int(key) else { return nil }
            guard id >= 0 && id < tokens.count else {
                throw GGUFError.invalid(file: file.path, field: key, reason: "token id \(id) outside the \(tokens.count) tokens")
            }
            return id
        }
        let bos = try tokenID("tokenizer.ggml.bos_token_id")
        let unk = try tokenID("tokenizer.ggml.unknown_token_id")
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(tokens.count)
        var added: [[String: Any]] = []
        for (i, t) in tokens.enumerated() {
            switch type(i) {
            case .control, .userDefined:
                added.append(["id": i, "content": t, "special": type(i) == .control, "normalized": false,
                              "lstrip": false, "rstrip": false, "single_word": false])
                if vocab[t] == nil { vocab[t] = i }
            case .unused:
                continue
            default:
                if vocab[t] == nil { vocab[t] = i }
            }
        }
        var root: [String: Any] = ["added_tokens": added]
        let addBOS: Bool
        switch model {
        case "gpt2":
            guard let merges = try file.strings("tokenizer.ggml.merges") else { throw GGUFError.missingKey(file: file.path, key: "tokenizer.ggml.merges") }
            let preName = try file.string("tokenizer.ggml.pre") ?? "gpt-2"
            guard let pattern = preTokenizerPatterns[preTokenizerAliases[preName] ?? preName] else {
                throw GGUFError.invalid(file: file.path, field: "tokenizer.ggml.pre",
                                        reason: "pre-tokenizer '\(preName)' is not supported (\(preTokenizerPatterns.keys.sorted().joined(separator: ", ")))")
            }
            root["model"] = ["type": "BPE", "vocab": vocab, "merges": merges, "ignore_merges": preName == "llama-bpe" || preName == "llama3"] as [String: Any]
            root["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": pattern], "behavior": "Isolated", "invert": false] as [String: Any],
                ["type": "ByteLevel", "add_prefix_space": false, "use_regex": false] as [String: Any],
            ]] as [String: Any]
            if preName == "qwen2" { root["normalizer"] = ["type": "NFC"] }
            root["decoder"] = ["type": "ByteLevel"]
            addBOS = try file.bool("tokenizer.ggml.add_bos_token") ?? false
        case "llama":
            guard let scores = try file.numbers("tokenizer.ggml.scores"), scores.count == tokens.count, scores.allSatisfy(\.isFinite) else {
                throw GGUFError.invalid(file: file.path, field: "tokenizer.ggml.scores", reason: "missing, not one score per token, or not finite")
            }
            root["model"] = ["type": "BPE", "vocab": vocab, "merges": sentencePieceMerges(tokens: tokens, scores: scores, vocab: vocab, isNormal: { type($0) == .normal || type($0) == .undefined }),
                             "byte_fallback": true, "fuse_unk": true, "unk_token": unk.map { tokens[$0] } ?? NSNull()] as [String: Any]
            let addPrefix = try file.bool("tokenizer.ggml.add_space_prefix") ?? true
            root["normalizer"] = ["type": "Sequence", "normalizers": (addPrefix ? [["type": "Prepend", "prepend": "\u{2581}"]] : [])
                                  + [["type": "Replace", "pattern": ["String": " "], "content": "\u{2581}"]]] as [String: Any]
            root["decoder"] = ["type": "Sequence", "decoders": [
                ["type": "Replace", "pattern": ["String": "\u{2581}"], "content": " "] as [String: Any],
                ["type": "ByteFallback"], ["type": "Fuse"],
            ] + (addPrefix ? [["type": "Strip", "content": " ", "start": 1, "stop": 0] as [String: Any]] : [])] as [String: Any]
            addBOS = try file.bool("tokenizer.ggml.add_bos_token") ?? true
        default:
            throw GGUFError.invalid(file: file.path, field: "tokenizer.ggml.model", reason: "'\(model)' is not supported (gpt2, llama)")
        }
        if addBOS, let bos {
            root["post_processor"] = ["type": "TemplateProcessing",
                                      "single": [["SpecialToken": ["id": tokens[bos], "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                                      "pair": [["SpecialToken": ["id": tokens[bos], "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                                               ["SpecialToken": ["id": tokens[bos], "type_id": 1]], ["Sequence": ["id": "B", "type_id": 1]]],
                                      "special_tokens": [tokens[bos]: ["id": tokens[bos], "ids": [bos], "tokens": [tokens[bos]]]]] as [String: Any]
        }
        let tok = try Tokenizer(root: root, file: file.path)
        tok.chatTemplate = try file.string("tokenizer.chat_template")
        return tok
    }

    /// SentencePiece BPE as ranked merges: every split of a normal piece into two pieces of the
    /// vocab (by Unicode scalar, as tokenizers' SentencePiece converter splits Python strings),
    /// ranked by the joined piece's score (highest first; ties by id, then by the split).
    ///
    /// Linear in the vocabulary's text: the cuts of a piece whose left part is a vocab piece come
    /// from one walk down a trie of the vocab, those whose right part is one from one walk down a
    /// trie of the reversed vocab; only cuts that are both become strings (a piece of length L no
    /// longer costs L^2, which a hostile file with a megabyte-long token turned into a hang).
    static func sentencePieceMerges(tokens: [String], scores: [Double], vocab: [String: Int], isNormal: (Int) -> Bool) -> [[String]] {
        let order = tokens.indices.filter { isNormal($0) && tokens[$0].unicodeScalars.count > 1 }.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
        let forward = ScalarTrie(vocab.keys.map { Array($0.unicodeScalars) })
        let backward = ScalarTrie(vocab.keys.map { Array($0.unicodeScalars.reversed()) })
        var merges: [[String]] = []
        for i in order {
            let piece = Array(tokens[i].unicodeScalars)
            let n = piece.count
            var leftOK = [Bool](repeating: false, count: n + 1), rightOK = [Bool](repeating: false, count: n + 1)
            forward.walk(piece.indices.lazy.map { piece[$0] }) { k in leftOK[k] = true }
            backward.walk(piece.indices.reversed().lazy.map { piece[$0] }) { k in rightOK[n - k] = true }
            var splits: [(Int, Int, String, String)] = []
            for cut in 1..<n where leftOK[cut] && rightOK[cut] {
                let l = String(String.UnicodeScalarView(piece[..<cut])), r = String(String.UnicodeScalarView(piece[cut...]))
                if let li = vocab[l], let ri = vocab[r] { splits.append((li, ri, l, r)) }
            }
            for s in splits.sorted(by: { ($0.0, $0.1) < ($1.0, $1.1) }) { merges.append([s.2, s.3]) }
        }
        return merges
    }
}

/// A trie over Unicode scalars in one flat table: (node, scalar) -> child.
struct ScalarTrie {
    private var children: [UInt64: Int32] = [:]
    private var terminal: [Bool] = [false]

    init(_ words: [[Unicode.Scalar]]) {
        for w in words {
            var node: Int32 = 0
            for c in w {
                let key = UInt64(node) << 21 | UInt64(c.value)
                if let next = children[key] { node = next } else {
                    let next = Int32(terminal.count)
                    terminal.append(false)
                    children[key] = next
                    node = next
                }
            }
            terminal[Int(node)] = true
        }
    }

    /// Walks `scalars` from the root; calls `found(k)` for each k such that the first k scalars are a word.
    func walk<S: Sequence>(_ scalars: S, found: (Int) -> Void) where S.Element == Unicode.Scalar {
        var node: Int32 = 0, k = 0
        for c in scalars {
            guard let next = children[UInt64(node) << 21 | UInt64(c.value)] else { return }
            node = next
            k += 1
            if terminal[Int(node)] { found(k) }
        }
    }
}

extension Tokenizer {
    /// The tokenizer of a model folder (its tokenizer.json) or of a GGUF file (its metadata).
    public static func open(model path: String) throws -> Tokenizer {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
            guard let t = try GGUFTokenizer.load(GGUFFile(path: path)) else {
                throw GGUFError.missingKey(file: path, key: "tokenizer.ggml.model")
            }
            return t
        }
        return try Tokenizer(directory: path)
    }
}
