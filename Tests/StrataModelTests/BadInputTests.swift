import Foundation
import Testing
@testable import StrataFormats
@testable import StrataModels
import StrataTensor

/// Edits the config.json of the model folder copy `d` (removed after), loads it, and expects a
/// `ConfigError` naming the file and `field`.
func expectConfigError(_ d: String, _ edit: (inout [String: Any]) -> Void, naming field: String) throws {
    defer { try? FileManager.default.removeItem(atPath: d) }
    let cfg = d + "/config.json"
    var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: cfg))) as! [String: Any]
    edit(&obj)
    try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: cfg))
    do {
        _ = try ModelRegistry.load(directory: d)
        Issue.record("\(d): expected an error naming \(field)")
    } catch let e as ConfigError {
        #expect("\(e)".contains(cfg) && "\(e)".contains(field), "\(e)")
    }
}

/// Writes a safetensors file from a raw header string and data bytes.
func writeRawSafetensors(_ path: String, header: String, data: [UInt8], headerLength: UInt64? = nil) throws {
    var bytes = [UInt8]()
    let h = Array(header.utf8)
    let n = headerLength ?? UInt64(h.count)
    for i in 0..<8 { bytes.append(UInt8((n >> (8 * UInt64(i))) & 0xFF)) }
    bytes += h + data
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

@Suite struct SafetensorsBadInputTests {
    let dir: String = {
        let d = Fixtures.scratch + "/bad-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    @Test func validFileRoundTrips() throws {
        let p = dir + "/ok.safetensors"
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        let b = Tensor(zeros: [4], dtype: .bf16)
        b.rawPointer.assumingMemoryBound(to: UInt16.self)[2] = HalfConversion.f32ToBF16(-2.5)
        try SafetensorsWriter.write(path: p, tensors: [("a", a), ("b", b)])
        let f = try SafetensorsFile(path: p)
        #expect(try f.tensor("a").toArray() == [1, 2, 3, 4, 5, 6])
        #expect(try f.tensor("b").toArray() == [0, 0, -2.5, 0])
        #expect(try f.tensor("a").storage.kind == .mapped)
    }

    @Test func truncatedAndTooShortFiles() throws {
        let p = dir + "/short.safetensors"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: p))
        #expect(throws: SafetensorsError.fileTooShort(file: p, size: 3)) { try SafetensorsFile(path: p) }
        // a valid file cut in the middle of its data
        let q = dir + "/cut.safetensors"
        try writeRawSafetensors(q, header: #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: [UInt8](repeating: 0, count: 10))
        #expect(throws: SafetensorsError.offsetsOutOfRange(file: q, tensor: "w", begin: 0, end: 16, dataSize: 10)) { try SafetensorsFile(path: q) }
    }

    @Test func headerLongerThanFile() throws {
        let p = dir + "/hdr.safetensors"
        try writeRawSafetensors(p, header: "{}", data: [], headerLength: 1 << 40)
        #expect(throws: SafetensorsError.headerTooLarge(file: p, headerLength: 1 << 40, fileSize: 10)) { try SafetensorsFile(path: p) }
    }

    @Test func malformedHeaders() throws {
        let p = dir + "/json.safetensors"
        try writeRawSafetensors(p, header: "{not json", data: [])
        #expect(throws: SafetensorsError.invalidHeader(file: p, reason: "not JSON (9 bytes)")) { try SafetensorsFile(path: p) }
        try writeRawSafetensors(p, header: #"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])
        #expect(throws: SafetensorsError.invalidHeader(file: p, reason: "tensor 'w' has no valid shape")) { try SafetensorsFile(path: p) }
        try writeRawSafetensors(p, header: #"{"w":{"dtype":"F32","shape":[1]}}"#, data: [0, 0, 0, 0])
        #expect(throws: SafetensorsError.invalidHeader(file: p, reason: "tensor 'w' has no valid data_offsets")) { try SafetensorsFile(path: p) }
    }

    @Test func byteLengthMismatchAndOverlap() throws {
        let p = dir + "/len.safetensors"
        try writeRawSafetensors(p, header: #"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#, data: [UInt8](repeating: 0, count: 24))
        #expect(throws: SafetensorsError.byteLengthMismatch(file: p, tensor: "w", shape: [2, 3], dtype: "F32", bytes: 20)) { try SafetensorsFile(path: p) }
        try writeRawSafetensors(p, header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: [UInt8](repeating: 0, count: 12))
        #expect(throws: SafetensorsError.overlap(file: p, tensor: "b", other: "a")) { try SafetensorsFile(path: p) }
    }

    @Test func unknownAndUnsupportedDTypes() throws {
        let p = dir + "/dt.safetensors"
        try writeRawSafetensors(p, header: #"{"w":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,2]}}"#, data: [0, 0])
        #expect(throws: SafetensorsError.unknownDType(file: p, tensor: "w", dtype: "Q4_K")) { try SafetensorsFile(path: p) }
        // a known but non-float dtype parses (a checkpoint may carry an I64 buffer) but is refused as a weight
        try writeRawSafetensors(p, header: #"{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#, data: [UInt8](repeating: 0, count: 16))
        let f = try SafetensorsFile(path: p)
        #expect(throws: SafetensorsError.unsupportedDType(file: p, tensor: "ids", dtype: "I64")) { try f.tensor("ids") }
        #expect(throws: SafetensorsError.missingTensor(name: "nope", checkpoint: p)) { try f.tensor("nope") }
    }

    @Test func shardedCheckpointAndBadIndex() throws {
        let d = dir + "/sharded"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        try SafetensorsWriter.write(path: d + "/model-00001-of-00002.safetensors", tensors: [("a", Tensor([1, 2], shape: [2]))])
        try SafetensorsWriter.write(path: d + "/model-00002-of-00002.safetensors", tensors: [("b", Tensor([3], shape: [1]))])
        let index = #"{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#
        try index.write(toFile: d + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        let c = try SafetensorsCheckpoint(directory: d)
        #expect(try c.tensor("a").toArray() == [1, 2] && c.tensor("b").toArray() == [3])
        #expect(throws: SafetensorsError.missingTensor(name: "c", checkpoint: d)) { try c.tensor("c") }
        // index pointing a tensor at the wrong shard
        let wrong = #"{"weight_map":{"a":"model-00002-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#
        try wrong.write(toFile: d + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        #expect(throws: SafetensorsError.self) { try SafetensorsCheckpoint(directory: d) }
        try "[1,2]".write(toFile: d + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        #expect(throws: SafetensorsError.invalidIndex(file: d + "/model.safetensors.index.json", reason: "not a JSON object")) {
            try SafetensorsCheckpoint(directory: d)
        }
    }

    /// Copies a fixture model folder so a test can damage it.
    func copyModel(_ name: String) throws -> String {
        let d = dir + "/" + name
        try FileManager.default.copyItem(atPath: Fixtures.model(name), toPath: d)
        return d
    }

    @Test func missingTensorAndWrongShapeInAModel() throws {
        let d = try copyModel("llama-gqa")
        // rewrite the checkpoint without one tensor
        let f = try SafetensorsFile(path: d + "/model.safetensors")
        var kept = try f.ordered.filter { $0.name != "model.layers.1.mlp.up_proj.weight" }.map { ($0.name, try f.tensor($0.name)) }
        try SafetensorsWriter.write(path: d + "/model.safetensors", tensors: kept.map { ($0.0, $0.1.contiguousF32()) })
        #expect(throws: SafetensorsError.missingTensor(name: "model.layers.1.mlp.up_proj.weight", checkpoint: d)) {
            try ModelRegistry.load(directory: d)
        }
        // a tensor whose shape disagrees with config.json
        kept = kept.map { $0.0 == "model.norm.weight" ? ($0.0, Tensor(zeros: [7])) : $0 }
        kept.append(("model.layers.1.mlp.up_proj.weight", Tensor(zeros: [96, 48])))
        try SafetensorsWriter.write(path: d + "/model.safetensors", tensors: kept.map { ($0.0, $0.1.contiguousF32()) })
        #expect(throws: TensorError.shapeMismatch(context: "model.norm.weight in \(d)", expected: [48], actual: [7])) {
            try ModelRegistry.load(directory: d)
        }
    }

    @Test func malformedConfigs() throws {
        let d = try copyModel("llama-mha-tied")
        let cfg = d + "/config.json"
        let original = try String(contentsOfFile: cfg, encoding: .utf8)
        try "{ \"architectures\": [\"LlamaForCausalLM\"], ".write(toFile: cfg, atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.self) { try ModelRegistry.load(directory: d) }
        try original.replacingOccurrences(of: "LlamaForCausalLM", with: "FalconForCausalLM").write(toFile: cfg, atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.unsupportedArchitecture(file: cfg, architecture: "FalconForCausalLM", supported: ModelRegistry.supportedArchitectures)) {
            try ModelRegistry.load(directory: d)
        }
        try original.replacingOccurrences(of: "\"hidden_size\": 48,", with: "").write(toFile: cfg, atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.malformed(file: cfg, field: "hidden_size", reason: "missing")) { try ModelRegistry.load(directory: d) }
        try original.replacingOccurrences(of: "\"num_key_value_heads\": 4", with: "\"num_key_value_heads\": 3").write(toFile: cfg, atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.invalidValue(file: cfg, field: "num_key_value_heads", reason: "3 does not divide num_attention_heads 4")) {
            try ModelRegistry.load(directory: d)
        }
        try original.replacingOccurrences(of: "\"rope_type\": \"default\"", with: "\"rope_type\": \"dynamic\", \"factor\": 4.0")
            .write(toFile: cfg, atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.unsupportedRopeType(file: cfg, ropeType: "dynamic")) { try ModelRegistry.load(directory: d) }
        // YaRN needs the original context it scales from
        try original.replacingOccurrences(of: "\"rope_type\": \"default\"", with: "\"rope_type\": \"yarn\", \"factor\": 4.0")
            .write(toFile: cfg, atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.malformed(file: cfg, field: "rope_scaling.original_max_position_embeddings", reason: "yarn needs it, positive")) {
            try ModelRegistry.load(directory: d)
        }
        try original.replacingOccurrences(of: "\"vocab_size\": ", with: "\"vocab_size\": \"many\", \"x\": ").write(toFile: cfg, atomically: true, encoding: .utf8)
        do { _ = try ModelRegistry.load(directory: d); Issue.record("expected an error") } catch let e as ConfigError {
            #expect("\(e)".contains("vocab_size"))
        }
        try FileManager.default.removeItem(atPath: cfg)
        #expect(throws: ConfigError.missingFile(path: cfg)) { try ModelRegistry.load(directory: d) }
    }

    @Test func malformedPhi3AndGemma2Configs() throws {
        // each edit of the fixture's config.json: the error names the file and the field
        func check(_ name: String, _ edit: (inout [String: Any]) -> Void, field: String) throws {
            try expectConfigError(copyModel(name), edit, naming: field)
        }
        func rope(_ o: inout [String: Any], _ f: (inout [String: Any]) -> Void) {
            var r = o["rope_parameters"] as! [String: Any]
            f(&r)
            o["rope_parameters"] = r
        }
        // Phi-3: LongRoPE factors of the wrong count, missing, not positive; no original length; odd rotary dims
        try check("phi3", { rope(&$0) { $0["short_factor"] = [1.0, 1.5] } }, field: "rope_scaling")
        try check("phi3", { rope(&$0) { $0["long_factor"] = nil } }, field: "rope_scaling")
        try check("phi3", { rope(&$0) { $0["long_factor"] = [2.0, -4.0, 9.0] } }, field: "rope_scaling")
        try check("phi3", { o in o["original_max_position_embeddings"] = nil; rope(&o) { $0["original_max_position_embeddings"] = nil } },
                  field: "original_max_position_embeddings")
        try check("phi3", { o in rope(&o) { $0["partial_rotary_factor"] = 0.25 } }, field: "partial_rotary_factor")  // 3 of 12 dims
        try check("phi3", { o in rope(&o) { $0["partial_rotary_factor"] = 1.5 } }, field: "partial_rotary_factor")
        // Gemma-2: layer_types of the wrong length or kind, a negative soft-cap or window, rotary scaling
        try check("gemma2", { $0["layer_types"] = ["sliding_attention"] }, field: "layer_types")
        try check("gemma2", { $0["layer_types"] = ["sliding_attention", "chunked_attention"] }, field: "layer_types")
        try check("gemma2", { $0["attn_logit_softcapping"] = -5.0 }, field: "attn_logit_softcapping")
        try check("gemma2", { $0["sliding_window"] = 0 }, field: "sliding_window")
        try check("gemma2", { $0["query_pre_attn_scalar"] = 0 }, field: "query_pre_attn_scalar")
        try check("gemma2", { rope(&$0) { $0["rope_type"] = "linear"; $0["factor"] = 2.0 } }, field: "rope_scaling")
        try check("gemma2", { $0["hidden_activation"] = "relu" }, field: "hidden_activation")
        // Gemma-3: rotary settings per layer type (malformed, an unknown layer type, a scaling it
        // does not take, a bad base), the pattern, bidirectional attention; the multimodal config's
        // fields are checked inside text_config, and a checkpoint without the text model is named
        try check("gemma3", { $0["rope_parameters"] = ["rope_type": "default", "rope_theta": 10000.0] }, field: "rope_parameters")
        try check("gemma3", { $0["rope_parameters"] = ["chunked_attention": ["rope_type": "default"]] }, field: "rope_parameters.chunked_attention")
        try check("gemma3", { $0["rope_parameters"] = ["full_attention": ["rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 16]] },
                  field: "rope_parameters.full_attention")
        try check("gemma3", { $0["rope_parameters"] = ["sliding_attention": ["rope_type": "default", "rope_theta": -1.0]] },
                  field: "rope_parameters.sliding_attention.rope_theta")
        try check("gemma3", { o in o["layer_types"] = nil; o["sliding_window_pattern"] = 0 }, field: "sliding_window_pattern")
        try check("gemma3", { $0["use_bidirectional_attention"] = true }, field: "use_bidirectional_attention")
        try check("gemma3-mm", { o in var t = o["text_config"] as! [String: Any]; t["layer_types"] = ["full_attention"]; o["text_config"] = t },
                  field: "layer_types")
        try check("gemma3-mm", { o in var t = o["text_config"] as! [String: Any]; t["num_hidden_layers"] = 0; o["text_config"] = t },
                  field: "num_hidden_layers")
    }

    @Test func olderConfigKeysRopeThetaAndRopeScaling() throws {
        // transformers < 5 writes rope_theta + rope_scaling {"type": ...}; both must decode the same
        let d = try copyModel("llama3-scaled")
        let cfg = d + "/config.json"
        var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: cfg))) as! [String: Any]
        var params = obj.removeValue(forKey: "rope_parameters") as! [String: Any]
        obj["rope_theta"] = params.removeValue(forKey: "rope_theta")
        params["type"] = params.removeValue(forKey: "rope_type")
        obj["rope_scaling"] = params
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: cfg))
        let model = try ModelRegistry.load(directory: d)
        let ref = try Fixtures.referenceLogits("llama3-scaled", 0)
        let got = try model.logits(try Fixtures.reference("llama3-scaled").sequences[0].map(Int32.init))
        #expect(zip(got.joined(), ref.joined()).map { abs($0 - $1) }.max()! < 1e-4)
    }
}
