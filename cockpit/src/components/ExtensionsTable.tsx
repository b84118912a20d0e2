// The installed extensions, one row each, with what the last update check found and the
// Update and Roll back actions; a row expands to its details and switches.

import { useState } from "react";
import { Flex } from "@patternfly/react-core/dist/esm/layouts/Flex/index.js";
import { Label, LabelGroup } from "@patternfly/react-core/dist/esm/components/Label/index.js";
import { Truncate } from "@patternfly/react-core/dist/esm/components/Truncate/index.js";
import { ExpandableRowContent, Table, Tbody, Td, Th, Thead, Tr } from "@patternfly/react-table/dist/esm/components/Table/index.js";
import CheckCircleIcon from "@patternfly/react-icons/dist/esm/icons/check-circle-icon";

import type { BootState, CurrentBoot, Status } from "../api/contract";
import type { ExtensionInfo, ExtensionsService } from "../api/service";
import { statusLabel } from "../api/status";
import { updateView } from "../api/updates";
import { AdminButton } from "./AdminButton";
import { ExtensionDetails } from "./ExtensionDetails";
import { RemoveDialog } from "./RemoveDialog";
import { UpdateActions, UpdateState } from "./Updates";

type LabelColor = "green" | "orange" | "red" | "grey" | "blue";

function statusColor(status: Status): LabelColor {
  switch (status) {
    case "ok":
      return "green";
    case "incompatible":
    case "shadowed":
    case "masked":
      return "orange";
    case "invalid":
    case "refused":
    case "image-missing":
      return "red";
    case "unknown":
      return "grey";
  }
}

const COLUMNS = 9;

function Row(props: {
  service: ExtensionsService;
  extension: ExtensionInfo;
  rowIndex: number;
  states: BootState[];
  current: CurrentBoot;
  admin: boolean;
  /** An update of this extension is running. */
  updating: boolean;
  onError: (message: string) => void;
  onSuccess: (message: string) => void;
}) {
  const { extension, rowIndex, admin } = props;
  const [expanded, setExpanded] = useState(false);
  const [removing, setRemoving] = useState(false);
  const view = updateView(extension.update, extension.version);
  return (
    <Tbody isExpanded={expanded} data-extension={extension.name}>
      <Tr>
        <Td
          expand={{
            rowIndex,
            isExpanded: expanded,
            onToggle: () => setExpanded(!expanded),
            expandId: `extension-${rowIndex}`,
          }}
        />
        {/* PatternFly names the toggle after "simple-node<row>": "<name> Details". */}
        <Th dataLabel="Name" scope="row" id={`simple-node${rowIndex}`}>
          {extension.name}
        </Th>
        <Td dataLabel="Version">{extension.version || "—"}</Td>
        <Td dataLabel="Update">
          <UpdateState view={view} />
        </Td>
        <Td dataLabel="Source" modifier="truncate">
          {extension.source ? <Truncate content={extension.source} position="middle" /> : "—"}
        </Td>
        <Td dataLabel="Enabled for">
          {extension.enabled.length > 0 ? (
            <LabelGroup aria-label={`Boot states of ${extension.name}`}>
              {extension.enabled.map((s) => (
                <Label key={s} isCompact color="blue">
                  {s}
                </Label>
              ))}
            </LabelGroup>
          ) : (
            "none"
          )}
        </Td>
        <Td dataLabel="Merged">
          {extension.merged ? (
            <span className="kx-merged">
              <CheckCircleIcon className="kx-merged-icon" aria-hidden /> Merged
            </span>
          ) : (
            "No"
          )}
        </Td>
        <Td dataLabel="Status">
          <Label isCompact color={statusColor(extension.status.status)}>
            {statusLabel(extension.status.status)}
          </Label>
        </Td>
        <Td dataLabel="Actions" modifier="fitContent">
          <Flex gap={{ default: "gapSm" }} flexWrap={{ default: "nowrap" }} justifyContent={{ default: "justifyContentFlexEnd" }}>
            <UpdateActions
              service={props.service}
              extension={extension}
              view={view}
              admin={admin}
              busy={props.updating}
              onError={props.onError}
              onSuccess={props.onSuccess}
            />
            <AdminButton
              admin={admin}
              label="Remove"
              ariaLabel={`Remove ${extension.name}`}
              variant="secondary"
              isDanger
              size="sm"
              needsAdmin="Turn on administrative access to remove extensions."
              onClick={() => setRemoving(true)}
            />
          </Flex>
        </Td>
      </Tr>
      <Tr isExpanded={expanded}>
        <Td colSpan={COLUMNS}>
          <ExpandableRowContent>{expanded && <ExtensionDetails {...props} view={view} />}</ExpandableRowContent>
        </Td>
      </Tr>
      {removing && <RemoveDialog service={props.service} extension={extension} onClose={() => setRemoving(false)} />}
    </Tbody>
  );
}

export function ExtensionsTable(props: {
  service: ExtensionsService;
  extensions: ExtensionInfo[];
  /** Extensions an update job is running for. */
  updating: string[];
  states: BootState[];
  current: CurrentBoot;
  admin: boolean;
  onError: (message: string) => void;
  onSuccess: (message: string) => void;
}) {
  const { extensions, updating, ...rest } = props;
  return (
    <Table aria-label="System extensions" variant="compact" id="extensions">
      <Thead>
        <Tr>
          <Th screenReaderText="Show details" />
          <Th>Name</Th>
          <Th>Version</Th>
          <Th>Update</Th>
          <Th>Source</Th>
          <Th>Enabled for</Th>
          <Th>Merged</Th>
          <Th>Status</Th>
          <Th screenReaderText="Actions" />
        </Tr>
      </Thead>
      {extensions.map((extension, rowIndex) => (
        <Row
          key={extension.path}
          extension={extension}
          rowIndex={rowIndex}
          updating={updating.includes(extension.name)}
          {...rest}
        />
      ))}
    </Table>
  );
}
