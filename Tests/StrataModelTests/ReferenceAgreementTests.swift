import Foundation
import Testing
@testable import Strata
import StrataFormats
@testable import StrataModels
import StrataTensor
import StrataTestSupport

// Hostile input II, class 5: valid files where Strata answered differently from the reference
// (transformers and tokenizers apply these fields; so does Strata now).

/// A copy of a fixture folder (its files symlinked) with some of its JSON files replaced by
/// `patch` (file name -> a function of the decoded object).
func patchedFixture(_ name: String, _ patch: [String: (inout [String: Any]) -> Void]) throws -> String {
    let src = Fixtures.model(name), dir = Fixtures.scratch + "/patched-\(name)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    for f in try FileManager.default.contentsOfDirectory(atPath: src) where patch[f] == nil {
        try FileManager.default.createSymbolicLink(atPath: dir + "/" + f, withDestinationPath: src + "/" + f)
    }
    for (f, change) in patch {
        var obj = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: src + "/" + f)))) as? [String: Any] ?? [:]
        change(&obj)
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: dir + "/" + f))
    }
    return dir
}

@Suite struct ReferenceAgreementTests {
    func logits(_ model: CausalLM, _ ids: [Int]) throws -> [Float] {
        let cache = model.makeCache(capacity: ids.count)
        return try ids.map(Int32.init).withUnsafeBufferPointer { Array(try model.forward($0, cache: cache, allLogits: true)) }
    }

    /// `tie_word_embeddings: true` with an `lm_head.weight` in the checkpoint: transformers ties
    /// the head to the embedding and never reads that tensor; so does Strata (the reference
    /// logits of the tied fixture, whatever the stray head holds).
    @Test func tiedEmbeddingsIgnoreAStrayHead() throws {
        let folder = try ModelFolder(path: Fixtures.model("llama-mha-tied"))
        #expect(folder.spec.tiedEmbeddings)
        let ckpt = try folder.requireCheckpoint()
        var tensors: [String: Tensor] = [:]
        for n in ckpt.tensorNames { tensors[n] = try ckpt.tensor(n) }
        #expect(tensors["lm_head.weight"] == nil)
        var rng = TestRNG(5)
        tensors["lm_head.weight"] = rng.tensor([folder.spec.vocabSize, folder.spec.hiddenSize])
        let stray = try folder.architecture.build(config: folder.config, store: MemoryWeightStore(tensors))
        let ref = try Fixtures.reference("llama-mha-tied")
        let got = try logits(stray, ref.sequences[0])
        let want = try Fixtures.referenceLogits("llama-mha-tied", 0).flatMap { $0 }
        #expect(maxAbsDiff(got, want) < 1e-4)
    }

    /// tokenizer_config.json's `add_bos_token: false` over a post-processor that adds BOS:
    /// transformers' Llama tokenizer rebuilds the post-processor without it.
    @Test func addBOSFalseDropsTheBOS() throws {
        let plain = try Tokenizer(directory: Fixtures.model("llama-gqa"))
        let withBOS = try plain.encode("hello world")
        #expect(withBOS.first == 1 && withBOS.count > 1)
        let dir = try patchedFixture("llama-gqa", ["tokenizer_config.json": { $0["add_bos_token"] = false }])
        let noBOS = try Tokenizer(directory: dir)
        #expect(try noBOS.encode("hello world") == Array(withBOS.dropFirst()))
        #expect(try ModelFolder(path: dir).tokenizer!.encode("hello world") == Array(withBOS.dropFirst()))
        let bad = try patchedFixture("llama-gqa", ["tokenizer_config.json": { $0["add_bos_token"] = "false" }])
        #expect { _ = try Tokenizer(directory: bad) } throws: { e in
            guard case let TokenizerError.malformed(file, field, _) = e else { return false }
            return file.hasSuffix("tokenizer_config.json") && field == "add_bos_token"
        }
    }

    /// `sliding_window` on Llama, which transformers' Llama ignores: no cap on the context, the
    /// same logits past the window.
    @Test func llamaIgnoresSlidingWindow() throws {
        let dir = try patchedFixture("llama-gqa", ["config.json": { $0["sliding_window"] = 4 }])
        let folder = try ModelFolder(path: dir)
        #expect(folder.spec.maxPositions == 128)
        let ids = try Fixtures.reference("llama-gqa").sequences[0]
        #expect(ids.count > 4)
        let got = try logits(folder.load(), ids)
        #expect(maxAbsDiff(got, try Fixtures.referenceLogits("llama-gqa", 0).flatMap { $0 }) < 1e-4)
        // Mistral applies its window (as a cap on the context)
        let mistral = try patchedFixture("mistral", ["config.json": { $0["sliding_window"] = 16 }])
        #expect(try ModelFolder(path: mistral).spec.maxPositions == 16)
    }

    /// generation_config.json: invalid values are refused once, when the folder opens, naming
    /// the file and the field (not per request as the client's fault); max_new_tokens is the
    /// default number of tokens.
    @Test func generationConfigIsCheckedOnceAndApplied() throws {
        for (field, value) in [("temperature", -1.0 as Any), ("top_p", 0.0 as Any), ("max_new_tokens", -5 as Any), ("repetition_penalty", 0.0 as Any)] {
            let dir = try patchedFixture("llama-gqa", ["generation_config.json": { $0[field] = value }])
            #expect { _ = try ModelFolder(path: dir) } throws: { e in
                guard case let ConfigError.invalidValue(file, f, _) = e else { return false }
                return file.hasSuffix("generation_config.json") && f == field
            }
        }
        let dir = try patchedFixture("llama-gqa", ["generation_config.json": { $0["max_new_tokens"] = 3 }])
        #expect(try ModelFolder(path: dir).samplingDefaults.maxTokens == 3)
    }

    /// config.json BOS/EOS ids outside the vocabulary (tiny Hub checkpoints: GPT-2's 50256 over a
    /// few hundred tokens): transformers runs them, so Strata warns and runs.
    @Test func outOfVocabularySpecialIdsWarnAndRun() throws {
        let dir = try patchedFixture("llama-gqa", ["config.json": { $0["eos_token_id"] = 50256; $0["bos_token_id"] = 50256 },
                                                   "generation_config.json": { $0.removeValue(forKey: "eos_token_id"); $0.removeValue(forKey: "bos_token_id") }])
        let warned = try ModelFolder(path: dir).warnings
        #expect(warned.count == 2 && warned.allSatisfy { $0.contains("50256") && $0.contains("config.json") })
        let loaded = try LoadedModel(directory: dir)
        let r = try Generator(loaded).generate(promptIDs: [1, 5, 9], parameters: SamplingParameters(temperature: 0, maxTokens: 4))
        #expect(r.ids.count == 4)
    }
}


// Hostile input II, class 4: fields mis-typed or inconsistent are refused naming the file and
// field (where tokenizers, transformers or llama.cpp refuse them), or applied (where they apply
// them); no part of a file is dropped in silence.
@Suite struct IgnoredFieldTests {
    static var baseModel: [String: Any] { ["type": "BPE", "vocab": ["a": 0, "b": 1, "ab": 2, "<s>": 3], "merges": ["a b"]] }

    func refused(_ root: [String: Any], field: String, _ line: Int = #line) {
        #expect(sourceLocation: SourceLocation(fileID: #fileID, filePath: #filePath, line: line, column: 1)) {
            _ = try Tokenizer(root: root, file: "tokenizer.json")
        } throws: { e in
            guard case let TokenizerError.malformed(file, f, _) = e else { return false }
            return file == "tokenizer.json" && f == field
        }
    }

    @Test func tokenizerJSONFieldsAreTypedOrRefused() throws {
        var m = Self.baseModel
        // the well-formed base merges "a b"
        #expect(try Tokenizer(root: ["model": m], file: "tokenizer.json").encode("ab") == [2])
        m["merges"] = "a b"; refused(["model": m], field: "model.merges")
        m["merges"] = ["a b": 0]; refused(["model": m], field: "model.merges")
        m = Self.baseModel; m["dropout"] = "0.1"; refused(["model": m], field: "model.dropout")
        m = Self.baseModel; m["dropout"] = 0.1; refused(["model": m], field: "model.dropout")
        m = Self.baseModel; m["byte_fallback"] = "true"; refused(["model": m], field: "model.byte_fallback")
        let good: [String: Any] = ["id": 3, "content": "<s>", "special": true]
        refused(["model": Self.baseModel, "added_tokens": [good, "<x>"]], field: "added_tokens.1")
        refused(["model": Self.baseModel, "added_tokens": [["id": 3, "content": "<s>", "special": "true"] as [String: Any]]], field: "added_tokens.0.special")
        refused(["model": Self.baseModel, "added_tokens": good], field: "added_tokens")
        refused(["model": Self.baseModel, "normalizer": ["type": "Sequence", "normalizers": ["type": "NFC"]]], field: "normalizer.normalizers")
        refused(["model": Self.baseModel, "pre_tokenizer": ["type": "Sequence", "pretokenizers": ["type": "ByteLevel"]]], field: "pre_tokenizer.pretokenizers")
        refused(["model": Self.baseModel, "decoder": ["type": "Sequence", "decoders": ["type": "ByteLevel"]]], field: "decoder.decoders")
        refused(["model": Self.baseModel, "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": "false"]], field: "pre_tokenizer.add_prefix_space")
        // post-processors: a name with no id, an id outside the vocabulary
        let template: [String: Any] = ["type": "TemplateProcessing", "single": [["SpecialToken": ["id": "<s>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]]]
        var pp = template; pp["special_tokens"] = ["<s>": ["id": "<s>", "ids": [3], "tokens": ["<s>"]]]
        #expect(try Tokenizer(root: ["model": Self.baseModel, "post_processor": pp], file: "tokenizer.json").encode("ab") == [3, 2])
        pp["special_tokens"] = ["<s>": ["id": "<s>", "ids": [9], "tokens": ["<s>"]]]
        refused(["model": Self.baseModel, "post_processor": pp], field: "post_processor.special_tokens.<s>.ids")
        var absent = template; absent["single"] = [["SpecialToken": ["id": "<nope>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]]
        refused(["model": Self.baseModel, "post_processor": absent], field: "post_processor.special_tokens")
        refused(["model": Self.baseModel, "post_processor": ["type": "Sequence", "processors": [["type": "ByteLevel"], pp]]], field: "post_processor.processors.1.special_tokens.<s>.ids")
    }

    /// config.json (and generation_config.json) with a key written twice: the last value, as Python reads it.
    @Test func repeatedConfigKeysKeepTheLastValue() throws {
        let src = Fixtures.model("llama-gqa")
        let dir = Fixtures.scratch + "/dupkeys-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for f in try FileManager.default.contentsOfDirectory(atPath: src) where f != "config.json" && f != "generation_config.json" {
            try FileManager.default.createSymbolicLink(atPath: dir + "/" + f, withDestinationPath: src + "/" + f)
        }
        var text = try String(contentsOfFile: src + "/config.json", encoding: .utf8)
        text = text.replacingOccurrences(of: "\"max_position_embeddings\": 128,", with: "\"max_position_embeddings\": 7, \"max_position_embeddings\": 96,")
        try text.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        try #"{"max_new_tokens": 5, "temperature": 0.5, "max_new_tokens": 9}"#.write(toFile: dir + "/generation_config.json", atomically: true, encoding: .utf8)
        let folder = try ModelFolder(path: dir)
        #expect(folder.spec.maxPositions == 96)
        #expect(folder.generation?.maxNewTokens == 9)
    }

    /// GGUF metadata that llama.cpp refuses or applies: refused naming the key, or applied.
    @Test func ggufMetadataIsCheckedOrApplied() throws {
        let src = try GGUFFile(path: GGUFFixtures.path("llama-q8_0"))
        let d = Fixtures.scratch + "/gguf-meta-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        /// The fixture rewritten with its metadata changed and tensors dropped by `keep`.
        func rewrite(_ name: String, set: [(String, GGUFValue)] = [], remove: Set<String> = [], keep: (String) -> Bool = { _ in true }) throws -> String {
            let p = d + "/" + name + ".gguf"
            var meta = src.keys.filter { !remove.contains($0) && !set.map(\.0).contains($0) }.map { ($0, src.metadata[$0]!) }
            meta += set
            let infos = src.tensors.filter { keep($0.name) }
            let g = try GGUFWriter(path: p, metadata: meta, tensors: infos.map { GGUFWriter.Spec(name: $0.name, dtype: $0.type.dtype!, shape: $0.shape) })
            for t in infos { try g.write(src.mapped.base! + t.begin, count: t.byteCount) }
            try g.finish()
            return p
        }
        func refused(_ path: String, key: String, _ line: Int = #line) {
            #expect(sourceLocation: SourceLocation(fileID: #fileID, filePath: #filePath, line: line, column: 1)) { _ = try ModelFolder(path: path) } throws: { e in
                guard case let GGUFError.invalid(file, field, _) = e else { return false }
                return file == path && field == key
            }
        }
        let heads = try src.requireInt("llama.attention.head_count"), hidden = try src.requireInt("llama.embedding_length")
        refused(try rewrite("rotdim", set: [("llama.rope.dimension_count", .u32(UInt32(hidden / heads / 2)))]), key: "llama.rope.dimension_count")
        refused(try rewrite("nan", set: [("llama.rope.freq_base", .f32(.nan))]), key: "llama.rope.freq_base")
        refused(try rewrite("blocks", set: [("llama.block_count", .u32(1))]), key: "llama.block_count")
        let tokens = src.metadata["tokenizer.ggml.tokens"]!.array!
        refused(try rewrite("short", set: [("tokenizer.ggml.tokens", .array(.string, Array(tokens.dropLast(3)))),
                                           ("tokenizer.ggml.token_type", .array(.i32, Array(src.metadata["tokenizer.ggml.token_type"]!.array!.dropLast(3)))),
                                           ("tokenizer.ggml.scores", .array(.f32, Array(src.metadata["tokenizer.ggml.scores"]!.array!.dropLast(3))))]),
                key: "tokenizer.ggml.tokens")
        // a scaling factor without a type is linear (llama.cpp's default), as is the older key
        let linear = try rewrite("linear", set: [("llama.rope.scaling.type", .string("linear")), ("llama.rope.scaling.factor", .f32(4))])
        let want = try ModelFolder(path: linear).load().logits([1, 5, 9, 30].map(Int32.init))
        let plain = try ModelFolder(path: GGUFFixtures.path("llama-q8_0")).load().logits([1, 5, 9, 30].map(Int32.init))
        #expect(maxAbsDiff(want.flatMap { $0 }, plain.flatMap { $0 }) > 1e-3)  // the factor changes the answer
        for (name, meta) in [("factor", [("llama.rope.scaling.factor", GGUFValue.f32(4))]), ("old", [("llama.rope.scale_linear", .f32(4))])] {
            let got = try ModelFolder(path: try rewrite(name, set: meta, remove: ["llama.rope.scaling.type"])).load().logits([1, 5, 9, 30].map(Int32.init))
            #expect(maxAbsDiff(got.flatMap { $0 }, want.flatMap { $0 }) < 1e-5, "\(name)")
        }
    }
}
