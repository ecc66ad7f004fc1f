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
            #expect(tok.encode(c.text) == c.ids, "\(name) encode \(c.text.debugDescription)")
            #expect(tok.encode(c.text, addSpecialTokens: false) == c.ids_no_special, "\(name) encode(no special) \(c.text.debugDescription)")
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
            let got = tok.encode(text, addSpecialTokens: false)
            if got != ids { failures.append("encode \(text.debugDescription): \(got) want \(ids)"); continue }
            let special = (c["ids_special"] as? [Int]) ?? ids
            if tok.encode(text) != special { failures.append("encode with special tokens \(text.debugDescription)") }
            let decoded = (c["decoded"] as? String) ?? text
            if (try? tok.decode(ids)) != decoded { failures.append("decode \(text.debugDescription): \(String(describing: try? tok.decode(ids))) want \(decoded.debugDescription)") }
        }
        #expect(failures.isEmpty, Comment(rawValue: "\(name): \(failures.count) of \(cases.count) differ:\n" + failures.sorted { $0.count < $1.count }.prefix(8).joined(separator: "\n")))
    }
}
