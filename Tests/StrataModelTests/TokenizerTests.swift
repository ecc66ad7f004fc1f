import Foundation
import Testing
@testable import StrataFormats
@testable import StrataModels

// Encode/decode against Hugging Face `tokenizers` (cases made by scripts/make_fixtures.py):
// exact equality of ids and text.
let tokenizerNames = ["bytelevel-gpt2", "bytelevel-llama3", "bytelevel-qwen2", "sp-legacy", "sp-metaspace"]

struct TokenizerCase: Decodable {
    let text: String
    let ids: [Int]
    let ids_no_special: [Int]
    let decoded: String
    let decoded_skip_special: String
}
struct TokenizerCases: Decodable { let name: String; let cases: [TokenizerCase] }

func loadCases(_ name: String) throws -> [TokenizerCase] {
    try JSONDecoder().decode(TokenizerCases.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.tokenizer(name) + "/cases.json"))).cases
}

@Suite struct TokenizerTests {
    @Test(arguments: tokenizerNames)
    func encodeMatchesTokenizers(name: String) throws {
        let tok = try Tokenizer(directory: Fixtures.tokenizer(name))
        for c in try loadCases(name) {
            #expect(try tok.encode(c.text) == c.ids, "\(name) encode \(c.text.debugDescription)")
            #expect(try tok.encode(c.text, addSpecialTokens: false) == c.ids_no_special, "\(name) encode(no special) \(c.text.debugDescription)")
        }
    }

    @Test(arguments: tokenizerNames)
    func decodeMatchesTokenizers(name: String) throws {
        let tok = try Tokenizer(directory: Fixtures.tokenizer(name))
        for c in try loadCases(name) {
            #expect(try tok.decode(c.ids) == c.decoded, "\(name) decode \(c.ids)")
            #expect(try tok.decode(c.ids, skipSpecialTokens: true) == c.decoded_skip_special, "\(name) decode(skip) \(c.ids)")
        }
    }

    @Test(arguments: tokenizerNames)
    func streamingDecodeConcatenatesToFullDecode(name: String) throws {
        let tok = try Tokenizer(directory: Fixtures.tokenizer(name))
        for c in try loadCases(name) {
            var s = StreamingDecoder(tokenizer: tok, skipSpecialTokens: true)
            var text = ""
            for id in c.ids {
                let piece = try s.push(id)
                #expect(!piece.contains("\u{FFFD}"), "\(name): a piece split a character: \(piece.debugDescription)")
                text += piece
            }
            text += try s.finish()
            #expect(text == c.decoded_skip_special, "\(name) stream \(c.text.debugDescription)")
        }
    }

    @Test func unknownIDAndMalformedJSONAreErrors() throws {
        let tok = try Tokenizer(directory: Fixtures.tokenizer("sp-legacy"))
        #expect(throws: TokenizerError.unknownTokenID(id: 99999, vocabSize: tok.vocabSize)) { try tok.decode([1, 99999], strict: true) }
        // like tokenizers, the lenient default skips ids it does not know
        #expect(try tok.decode([1, 99999, 354]) == "<s> the")
        let dir = Fixtures.scratch + "/badtok"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/tokenizer.json"
        try "{\"model\": ".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: TokenizerError.malformed(file: path, field: "(document)", reason: "not a JSON object")) { try Tokenizer(path: path) }
        try #"{"model": {"type": "Unigram", "vocab": []}}"#.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: TokenizerError.unsupported(file: path, field: "model.type", type: "Unigram")) { try Tokenizer(path: path) }
        try #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}"#.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: TokenizerError.self) { try Tokenizer(path: path) }
        do { _ = try Tokenizer(path: path) } catch { #expect("\(error)".contains("merges.0")) }
        #expect(throws: ConfigError.missingFile(path: dir + "/nope.json")) { try Tokenizer(path: dir + "/nope.json") }
    }
}

/// The heap-based merge (words over 16 symbols) applies the same merges in the same order as
/// rescanning for the lowest-ranked leftmost pair, on random long words of every fixture
/// tokenizer; and a 200,000-symbol word merges (the rescanning loop was quadratic).
@Suite struct LinearBPETests {
    func naive(_ model: BPEModel, _ input: [Int]) -> [Int] {
        var symbols = input
        while symbols.count > 1 {
            var bestRank = Int.max, bestPos = -1, bestID = 0
            for i in 0..<(symbols.count - 1) {
                if let m = model.merges[UInt64(symbols[i]) << 32 | UInt64(symbols[i + 1])], m.rank < bestRank {
                    bestRank = m.rank; bestPos = i; bestID = m.id
                }
            }
            if bestPos < 0 { break }
            symbols[bestPos] = bestID
            symbols.remove(at: bestPos + 1)
        }
        return symbols
    }

    @Test(arguments: ["bytelevel-gpt2", "bytelevel-llama3", "bytelevel-qwen2", "sp-legacy", "sp-metaspace"])
    func heapMergeEqualsRescanning(_ name: String) throws {
        let tok = try Tokenizer(directory: Fixtures.tokenizer(name))
        let model = tok.model
        // symbols that take part in merges: the left and right ids of the merge table
        let ids = Array(Set(model.merges.keys.flatMap { [Int($0 >> 32), Int($0 & 0xFFFF_FFFF)] })).sorted()
        #expect(!ids.isEmpty)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let n = Int.random(in: 17...300, using: &rng)
            // few distinct symbols, so merges chain and compete
            let alphabet = (0..<6).map { _ in ids.randomElement(using: &rng)! }
            let word = (0..<n).map { _ in alphabet.randomElement(using: &rng)! }
            var fast = word
            model.mergeAll(&fast)
            #expect(fast == naive(model, word))
        }
        var long = [Int](repeating: ids[0], count: 200_000)
        model.mergeAll(&long)
        #expect(!long.isEmpty && long.count <= 200_000)
    }
}

/// 2000 strings per fixture tokenizer (every Unicode category, combining marks, ligatures,
/// CR/LF/CRLF, controls, emoji sequences, CJK, RTL, long runs) encoded by `tokenizers`
/// (scripts/make_tokenizer_diff_fixtures.py): Strata must give the same ids, with and without
/// special tokens, and decode them back to the same text.
@Suite struct TokenizerDifferentialTests {
    @Test(arguments: ["bytelevel-gpt2", "bytelevel-llama3", "bytelevel-qwen2", "sp-legacy", "sp-metaspace"])
    func sameIdsAsTokenizers(_ name: String) throws {
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.root + "/tokenizers/differential.json"))) as! [String: Any]
        let texts = doc["texts"] as! [String]
        let cases = (doc["tokenizers"] as! [String: Any])[name] as! [[String: Any]]
        #expect(cases.count >= 2000 && cases.count == texts.count)
        let tok = try Tokenizer(directory: Fixtures.tokenizer(name))
        var failures: [String] = []
        for (text, c) in zip(texts, cases) {
            let ids = c["ids"] as! [Int]
            let got = try tok.encode(text, addSpecialTokens: false)
            if got != ids { failures.append("encode \(text.debugDescription): \(got) want \(ids)"); continue }
            let special = (c["ids_special"] as? [Int]) ?? ids
            if try tok.encode(text) != special { failures.append("encode with special tokens \(text.debugDescription)") }
            let decoded = (c["decoded"] as? String) ?? text
            if (try? tok.decode(ids)) != decoded { failures.append("decode \(text.debugDescription): \(String(describing: try? tok.decode(ids))) want \(decoded.debugDescription)") }
        }
        #expect(failures.isEmpty, Comment(rawValue: "\(name): \(failures.count) of \(cases.count) differ:\n" + failures.sorted { $0.count < $1.count }.prefix(8).joined(separator: "\n")))
    }
}

/// Hostile input II, class 3: work that grew faster than the input.
@Suite struct TokenizerWorkBoundTests {
    /// A split pattern from tokenizer.json that backtracks catastrophically stops at its budget
    /// with an error naming the pattern; the same pattern on text it matches quickly still works.
    @Test func catastrophicSplitPatternStopsWithItsName() throws {
        let root: [String: Any] = [
            "model": ["type": "BPE", "vocab": ["a": 0, "b": 1, "c": 2], "merges": [] as [Any]],
            "pre_tokenizer": ["type": "Split", "pattern": ["Regex": "(a|aa)+c"], "behavior": "Isolated", "invert": false],
        ]
        let tok = try Tokenizer(root: root, file: "tokenizer.json")
        #expect(try tok.encode("aaac") == [0, 0, 0, 2])
        #expect {
            _ = try tok.encode(String(repeating: "a", count: 60))
        } throws: { e in
            guard case let TokenizerError.regexBudget(pattern, length) = e else { return false }
            return pattern == "(a|aa)+c" && length == 60 && "\(e)".contains("(a|aa)+c")
        }
    }

    /// Offsets of split pieces are counted as the pieces go by (the Metaspace "first" scheme reads
    /// them): a long text whose pieces each need their offset gives the ids of its parts.
    @Test func longTextsTokenizeAsTheirParts() throws {
        // byte-level: the split pattern cuts before each " hello", so the whole is its parts
        let tok = try Tokenizer(directory: Fixtures.tokenizer("bytelevel-llama3"))
        let first = try tok.encode("hello there", addSpecialTokens: false), rest = try tok.encode(" hello there", addSpecialTokens: false)
        let many = try tok.encode("hello there" + String(repeating: " hello there", count: 20_000), addSpecialTokens: false)
        #expect(many == first + Array([[Int]](repeating: rest, count: 20_000).joined()))
        // Metaspace (prepend_scheme "first" reads the offsets): only the first word gets the prefix
        let sp = try Tokenizer(directory: Fixtures.tokenizer("sp-metaspace"))
        let one = try sp.encode("hello", addSpecialTokens: false), two = try sp.encode("hello hello", addSpecialTokens: false)
        let manySP = try sp.encode("hello" + String(repeating: " hello", count: 20_000), addSpecialTokens: false)
        let tail = Array(two.dropFirst(one.count))
        #expect(manySP == one + Array([[Int]](repeating: tail, count: 20_000).joined()))
    }

    /// SentencePiece merges from a GGUF vocabulary with a very long piece: found by walking tries,
    /// not by making every split of it (quadratic: a 200k-scalar token took minutes); the merges
    /// equal the naive enumeration's on a vocabulary small enough for it.
    @Test func sentencePieceMergesAreLinearAndExact() {
        // (no two canonically equivalent pieces: Swift's String keys would join them)
        let tokens = ["a", "b", "ab", "ba", "aba", "bab", "abab", "é", "aé", "x", "xé", "日本", "日", "本"]
        let scores = tokens.indices.map { Double(-$0) }
        var vocab: [String: Int] = [:]
        for (i, t) in tokens.enumerated() { vocab[t] = i }
        var naive: [[String]] = []
        for i in tokens.indices.filter({ tokens[$0].unicodeScalars.count > 1 }).sorted(by: { scores[$0] > scores[$1] }) {
            let u = Array(tokens[i].unicodeScalars)
            var splits: [(Int, Int, String, String)] = []
            for cut in 1..<u.count {
                let l = String(String.UnicodeScalarView(u[..<cut])), r = String(String.UnicodeScalarView(u[cut...]))
                if let li = vocab[l], let ri = vocab[r] { splits.append((li, ri, l, r)) }
            }
            naive += splits.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map { [$0.2, $0.3] }
        }
        #expect(GGUFTokenizer.sentencePieceMerges(tokens: tokens, scores: scores, vocab: vocab, isNormal: { _ in true }) == naive)
        #expect(naive.contains(["x", "é"]) && naive.contains(["a", "é"]) && naive.contains(["日", "本"]))
        let long = String(repeating: "ab", count: 100_000)
        let big = tokens + [long]
        var bigVocab = vocab
        bigVocab[long] = big.count - 1
        let merges = GGUFTokenizer.sentencePieceMerges(tokens: big, scores: big.indices.map { Double(-$0) }, vocab: bigVocab, isNormal: { _ in true })
        #expect(merges.count == naive.count)  // the long piece splits into no two vocab pieces
    }
}
