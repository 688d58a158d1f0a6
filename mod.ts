/**
 * pifs: a distributed store built from Raspberry Pis, each running the pifs
 * node firmware and keeping its data on its own SD card, driven over UART by
 * one host. This module is the host library's public surface.
 *
 * @example
 * ```ts
 * import { chunkId, encodeFrame, FrameParser, Op } from "./mod.ts";
 * const p = new FrameParser();
 * p.push(encodeFrame({ op: Op.HELLO, flags: 0, reqid: 1, payload: new Uint8Array() }));
 * if (p.next()?.kind !== "frame") throw new Error("frame did not round-trip");
 * if ((await chunkId(new Uint8Array())).slice(0, 8) !== "e3b0c442") throw new Error();
 * ```
 *
 * @module
 */
export { errorCode, isOsError, PifsError, printable } from "./errors.ts";
export * from "./link/codec.ts";
export * from "./link/crc32c.ts";
export * from "./link/client.ts";
export { chunkId, objectId, type Sha256Stream, sha256Stream } from "./ids.ts";
export { listPorts, SerialError, SerialPort, UnsupportedBaudError } from "./link/serial.ts";
export type { SerialOptions, WaitMethod } from "./link/serial.ts";
export {
  clusterDir,
  ClusterError,
  type ClusterFile,
  connectNode,
  type LinkEntry,
  type NodeEntry,
  readClusterFile,
} from "./store/cluster.ts";
export {
  CardError,
  type CardFile,
  CardHoldsDataError,
  type CardOptions,
  type CardSummary,
  type CardSurvey,
  type FatVolume,
  initCard,
  makeCard,
  type StoreInfo,
} from "./card/card.ts";
export { formatBytes, parseSize, SizeError } from "./units.ts";
export {
  DeployError,
  deployImage,
  type DeployOptions,
  type DeployResult,
  type ImageInfo,
  imageInfo,
} from "./link/deploy.ts";
export { type QemuChoice, simDown, simUp, type SimUpOptions } from "./sim/sim.ts";
export { LinkError, startLink } from "./sim/link.ts";
export type { LinkDirectionStats, LinkHandle, LinkOptions, LinkStats } from "./sim/link.ts";
export {
  type ChunkProblem,
  type NodeScrub,
  repair,
  type RepairOptions,
  type RepairResult,
  scrub,
  type ScrubOptions,
  type ScrubReport,
} from "./store/repair.ts";
export {
  drain,
  rebalance,
  RebalanceError,
  type RebalanceOptions,
  type RebalanceResult,
} from "./store/rebalance.ts";
export {
  addNode,
  type AddNodeOptions,
  type AddNodeResult,
  NodeAddError,
} from "./store/membership.ts";
export {
  recover,
  type RecoverCard,
  RecoverError,
  type RecoverOptions,
  type RecoverReport,
} from "./store/recover.ts";
export { placeChunk, PlacementError, type PlacementNode, rankNodes } from "./store/placement.ts";
export {
  CHECKPOINT_BYTES,
  CHECKPOINT_ENTRIES,
  type CheckpointResult,
  ClusterBusyError,
  type DistributiveOmit,
  LAZY_JOURNAL_BYTES,
  type NodeState,
  NoSpaceError,
  type PutStats,
  QuorumError,
  ReadOnlyError,
  Store,
  type StoreOptions,
} from "./store/store.ts";
export {
  type CheckpointObject,
  type CheckpointSnapshot,
  checkWritable,
  entryPaths,
  type JournalEntry,
  type Manifest,
  normalizePath,
  PathError,
  type SnapshotObject,
  SNAPSHOTS_DIR,
  type SnapshotV1,
  type SnapshotV2,
  splitTree,
  TREE_PART_BYTES,
  TREE_PART_ENTRIES,
  TREE_SPLIT_BYTES,
  type TreeEntry,
  type TreeObject,
  unzipEntry,
  zipEntries,
  type ZipEntry,
} from "./store/namespace.ts";
export { Feed, type FeedOptions } from "./store/feed.ts";
export {
  formatCluster,
  type FormatClusterOptions,
  initCluster,
  type InitClusterOptions,
  InitError,
  type PortProbe,
  probePort,
  probePorts,
} from "./store/init.ts";
export { type PutFileMeta, PutQueue, type PutQueueOptions } from "./store/put.ts";
export {
  type CheckpointRow,
  type Entry,
  Index,
  type SnapshotRow,
  type SyncCacheRow,
} from "./store/index_db.ts";
export {
  defineJob,
  type Job,
  type JobDefinition,
  openCluster,
  type Source,
  type SourceEntry,
  SourceError,
  type SourceProblem,
  type SourceTransform,
  sync,
  transformSource,
} from "./sync/api.ts";
export {
  diffSnapshots,
  type NamespaceView,
  type SnapshotStore,
  SnapshotView,
  writeSnapshot,
  type WrittenSnapshot,
} from "./store/snapshots.ts";
export {
  buildTrees,
  diffTrees,
  type GetObject,
  readTreeFiles,
  type SnapshotChange,
  type SnapshotFile,
} from "./store/trees.ts";
export {
  newSyncProgress,
  runJob,
  sourceFor,
  type SyncEvent,
  type SyncOptions,
  type SyncProgress,
  type SyncSummary,
} from "./sync/engine.ts";
export {
  type ChunkingSpec,
  type FolderSourceSpec,
  type HttpSourceSpec,
  type JobSpec,
  loadSpec,
  type ParsedJob,
  parseSpec,
  type PhotosSourceSpec,
  type SnapshotsSpec,
  type SourceSpec,
  SpecError,
  type SpecIssue,
} from "./sync/spec.ts";
export { type CdcOptions, cdcStream, Chunker, DEFAULT_CDC } from "./sync/cdc.ts";
export { FolderSource } from "./pipelines/folder.ts";
export { PhotosSource } from "./pipelines/photos.ts";
export { type HttpEntry, HttpSource, type HttpStream } from "./pipelines/http.ts";
