import Foundation
import Testing
@testable import Strata
@testable import StrataFormats
@testable import StrataModels
import StrataTensor

// GGUF files written the way llama.cpp's converter writes them (scripts/make_gguf_fixtures.py,
// PyPI gguf): logits against transformers running gguf-py's dequantization of the same blocks,
// greedy continuations, tokenizer ids against the Hugging Face tokenizer of the same model, and
// every class of hostile file.

let ggufModels = ["llama-q8_0", "llama-q4_0", "llama-q4_k_m", "llama3-q6_k", "qwen2-q4_k_m", "qwen3-q8_0", "gemma2-q8_0", "gpt2-q8_0", "phi3-q8_0"]
    + ["gemma3-q8_0"] + newTypeModels + moeGGUFModels
/// Mixtures of experts as llama.cpp's converter writes them (experts stacked in ffn_*_exps).
let moeGGUFModels = ["qwen3moe-q4_k_m", "mixtral-q4_k_m", "gpt-oss-mxfp4"]
/// The fixtures of the types that run the generic kernels (Q5_K with Q6_K; Q4_1 with Q5_0; IQ4_NL with IQ4_XS).
let newTypeModels = ["llama-q5_k_m", "llama-q4_1-q5_0", "qwen2-iq4"]

enum GGUFFixtures {
    static func path(_ name: String) -> String { Fixtures.root + "/gguf/" + name + ".gguf" }
    /// `ids` from the Hugging Face tokenizer, `native_ids` from the model's own tokenizer
    /// (SentencePiece for `llama` vocabularies).
    struct Case: Decodable { let text: String; let ids: [Int]; let native_ids: [Int] }
    struct Reference: Decodable {
        let architecture: String
        let sequences: [[Int]]
        let greedy_prompt: [Int]
        let greedy_continuation: [Int]
        let tokenizer_cases: [Case]
        let chat_template: String?
    }
    static func reference(_ name: String) throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.root + "/gguf/" + name + ".json")))
    }
    static func logits(_ name: String, _ i: Int) throws -> [[Float]] {
        let t = try SafetensorsFile(path: Fixtures.root + "/gguf/" + name + ".safetensors").tensor("seq\(i)")
        let v = t.shape[1], all = t.toArray()
        return (0..<t.shape[0]).map { Array(all[($0 * v)..<($0 * v + v)]) }
    }
}

@Suite struct GGUFModelTests {

    @Test(arguments: ggufModels)
    func greedyContinuationMatches(name: String) throws {
        let ref = try GGUFFixtures.reference(name)
        let loaded = try LoadedModel(directory: GGUFFixtures.path(name))
        var params = SamplingParameters.greedy
        params.maxTokens = ref.greedy_continuation.count
        params.stopAtEOS = false
        let r = try Generator(loaded).generate(promptIDs: ref.greedy_prompt, parameters: params)
        #expect(r.ids == ref.greedy_continuation, "\(name)")
    }

    /// The tokenizer rebuilt from tokenizer.ggml.* gives the Hugging Face tokenizer's ids. Where
    /// transformers' conversion of a SentencePiece model disagrees with SentencePiece itself (a
    /// leading space: 2 of 15 cases), it gives SentencePiece's, as llama.cpp does.
    @Test(arguments: ["llama-q8_0", "llama3-q6_k", "qwen2-q4_k_m", "gpt2-q8_0"])
    func tokenizerFromMetadataMatchesHuggingFace(name: String) throws {
        let folder = try ModelFolder(path: GGUFFixtures.path(name))
        let tok = try #require(folder.tokenizer)
        let ref = try GGUFFixtures.reference(name)
        var disagreements = 0
        for c in ref.tokenizer_cases {
            let got = try tok.encode(c.text)
            if c.ids == c.native_ids {
                #expect(got == c.ids, "\(name): \(c.text.debugDescription)")
            } else {
                disagreements += 1
                #expect(got == c.native_ids, "\(name): \(c.text.debugDescription)")
            }
            #expect(try tok.decode(got, skipSpecialTokens: true) == c.text || c.text.hasPrefix(" ") || c.text.contains("SPECIAL"), "\(name) decode: \(c.text.debugDescription)")
        }
        #expect(disagreements <= 2)
        #expect(tok.chatTemplate == ref.chat_template)
    }

    @Test func quantizedTensorsStayMappedAndAreCountedInTheirBytes() throws {
        let folder = try ModelFolder(path: GGUFFixtures.path("llama-q4_k_m"))
        let ckpt = try folder.requireCheckpoint()
        let q = try #require(ckpt.entry("model.layers.0.self_attn.q_proj.weight"))
        #expect(q.rawDType == "Q4_K" && q.dtype == .q4_k && q.shape == [256, 256] && q.byteCount == 256 * 144)
        let down = try #require(ckpt.entry("model.layers.1.mlp.down_proj.weight"))
        #expect(down.dtype == .q6_k && down.shape == [256, 512])
        let t = try ckpt.tensor("model.layers.0.self_attn.q_proj.weight")
        #expect(t.storage.kind == .mapped)
        let inv = try WeightInventory(folder: folder)
        #expect(inv.totalBytes == ckpt.tensorNames.compactMap { ckpt.entry($0)?.byteCount }.reduce(0, +))
    }
}

@Suite struct GGUFBadInputTests {
    static let bad = ["truncated-header", "truncated-data", "bad-magic", "version-1", "huge-tensor-count", "huge-kv-count",
                      "huge-string-length", "unknown-type", "offset-outside", "dims-overflow", "overlap", "misaligned-offset", "duplicate-tensor"]

    /// Each hostile file (made from a good one by the fixtures script) gives a typed GGUFError
    /// naming the file, before any tensor is touched.
    @Test func theFileTheyAreMadeFromOpens() throws {
        let f = try GGUFFile(path: Fixtures.root + "/gguf/bad/base.gguf")
        #expect(f.tensors.map(\.name) == ["blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_norm.weight"])
        #expect(try f.tensor("blk.0.attn_norm.weight").toArray() == [Float](repeating: 1, count: 64))
    }

    @Test(arguments: bad)
    func hostileFileGivesATypedError(name: String) throws {
        let path = Fixtures.root + "/gguf/bad/" + name + ".gguf"
        do {
            _ = try GGUFFile(path: path)
            Issue.record("\(name): opened")
        } catch let e as GGUFError {
            #expect(e.description.hasPrefix(path), "\(name): \(e)")
            switch (name, e) {
            case ("truncated-header", .truncated), ("truncated-header", .invalid), ("truncated-data", .offsetOutOfRange), ("bad-magic", .notGGUF),
                 ("version-1", .unsupportedVersion), ("huge-tensor-count", .invalid), ("huge-kv-count", .invalid),
                 ("huge-string-length", .truncated), ("unknown-type", .unknownType), ("offset-outside", .offsetOutOfRange),
                 ("dims-overflow", .badShape), ("overlap", .overlap), ("misaligned-offset", .offsetOutOfRange), ("duplicate-tensor", .duplicateTensor):
                break
            default:
                Issue.record("\(name): unexpected error \(e)")
            }
        }
    }

    @Test func duplicateNamesAndWrongKeyTypesAreRefused() throws {
        let d = Fixtures.scratch + "/gguf-bad"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        let w = Tensor([1, 2, 3, 4], shape: [4])
        func write(_ name: String, _ meta: [(String, GGUFValue)], _ tensors: [String]) throws -> String {
            let p = d + "/" + name + ".gguf"
            let g = try GGUFWriter(path: p, metadata: meta, tensors: tensors.map { .init(name: $0, dtype: .f32, shape: [4]) })
            for _ in tensors { try g.write(w.rawPointer, count: 16) }
            try g.finish()
            return p
        }
        let dup = try write("dup", [("general.architecture", .string("llama"))], ["a", "a"])
        #expect(throws: GGUFError.duplicateTensor(file: dup, tensor: "a")) { try GGUFFile(path: dup) }
        let dupKey = try write("dupkey", [("k", .u32(1)), ("k", .u32(2))], ["a"])
        #expect(throws: GGUFError.duplicateKey(file: dupKey, key: "k")) { try GGUFFile(path: dupKey) }
        let align = try write("align", [("general.alignment", .u32(24))], ["a"])
        #expect(throws: GGUFError.self) { try GGUFFile(path: align) }
        // a model whose hyperparameter has the wrong type, or is missing, names the key
        let wrong = try write("wrong", [("general.architecture", .string("llama")), ("llama.attention.head_count", .string("two"))], ["a"])
        #expect(throws: GGUFError.wrongKeyType(file: wrong, key: "llama.attention.head_count", expected: "an integer")) { try ModelFolder(path: wrong) }
        let missing = try write("missing", [("general.architecture", .string("llama")), ("llama.attention.head_count", .u32(4))], ["a"])
        #expect(throws: GGUFError.missingKey(file: missing, key: "llama.vocab_size")) { try ModelFolder(path: missing) }
        let arch = try write("arch", [("general.architecture", .string("mamba"))], ["a"])
        #expect(throws: ConfigError.self) { try ModelFolder(path: arch) }
        // not a regular file: refused without opening (a FIFO would block)
        let fifo = d + "/fifo.gguf"
        unlink(fifo)
        #expect(mkfifo(fifo, 0o644) == 0)
        #expect(throws: FileError.notRegular(path: fifo)) { try GGUFFile(path: fifo) }
    }

    /// Lying tokenizer metadata names the key instead of trapping or tokenizing wrongly.
    @Test func hostileTokenizerMetadataIsRefused() throws {
        let d = Fixtures.scratch + "/gguf-tok"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        let tokens: GGUFValue = .array(.string, [.string("a"), .string("b"), .string("ab")])
        func load(_ name: String, _ extra: [(String, GGUFValue)]) throws -> String {
            let p = d + "/" + name + ".gguf"
            let g = try GGUFWriter(path: p, metadata: [("tokenizer.ggml.model", .string("llama")), ("tokenizer.ggml.tokens", tokens)] + extra, tensors: [])
            try g.finish()
            _ = try GGUFTokenizer.load(GGUFFile(path: p))
            return p
        }
        let nanTypes = Fixtures.scratch + "/gguf-tok/types.gguf"
        #expect(throws: GGUFError.wrongKeyType(file: nanTypes, key: "tokenizer.ggml.token_type", expected: "an array of integers")) {
            _ = try load("types", [("tokenizer.ggml.token_type", .array(.f32, [.f32(.nan), .f32(1e30), .f32(1)]))])
        }
        #expect(throws: GGUFError.self) {
            _ = try load("scores", [("tokenizer.ggml.scores", .array(.f32, [.f32(0), .f32(.nan), .f32(-1)]))])
        }
        #expect(throws: GGUFError.self) {
            _ = try load("count", [("tokenizer.ggml.scores", .array(.f32, [.f32(0)]))])
        }
        #expect(throws: GGUFError.self) {
            _ = try load("bos", [("tokenizer.ggml.scores", .array(.f32, [.f32(0), .f32(0), .f32(-1)])), ("tokenizer.ggml.bos_token_id", .u32(7))])
        }
        // and a well-formed one merges by score: "a" "b" -> "ab"
        let ok = try load("ok", [("tokenizer.ggml.scores", .array(.f32, [.f32(0), .f32(0), .f32(-1)])), ("tokenizer.ggml.add_space_prefix", .bool(false)),
                                 ("tokenizer.ggml.add_bos_token", .bool(false))])
        #expect(try GGUFTokenizer.load(GGUFFile(path: ok))?.encode("ab") == [2])
    }

    @Test func writerRoundTripsMetadataAndTensors() throws {
        let p = Fixtures.scratch + "/roundtrip.gguf"
        let meta: [(String, GGUFValue)] = [
            ("general.architecture", .string("llama")), ("a.u8", .u8(7)), ("a.i64", .i64(-5)), ("a.f32", .f32(0.5)), ("a.bool", .bool(true)),
            ("a.strings", .array(.string, [.string("x"), .string("")])), ("a.floats", .array(.f32, [.f32(1), .f32(-2)])),
        ]
        let raw = (0..<(2 * 34)).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let g = try GGUFWriter(path: p, metadata: meta, tensors: [.init(name: "w", dtype: .q8_0, shape: [2, 32])])
        try raw.withUnsafeBytes { try g.write($0.baseAddress!, count: raw.count) }
        try g.finish()
        let f = try GGUFFile(path: p)
        #expect(f.keys == meta.map { $0.0 })
        for (k, v) in meta { #expect(f.metadata[k] == v) }
        #expect(f.tensors.count == 1 && f.tensors[0].dims == [32, 2] && f.tensors[0].type.name == "Q8_0")
        let t = try f.tensor("w")
        #expect(Array(UnsafeRawBufferPointer(start: t.rawPointer, count: raw.count)) == raw)
    }
}
