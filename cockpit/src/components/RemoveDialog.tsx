// Remove asks first: the image and its record are deleted, and a merged extension can
// leave the running system now or at the next boot.

import { useState } from "react";
import { Alert } from "@patternfly/react-core/dist/esm/components/Alert/index.js";
import { Button } from "@patternfly/react-core/dist/esm/components/Button/index.js";
import { Checkbox } from "@patternfly/react-core/dist/esm/components/Checkbox/index.js";
import { Content } from "@patternfly/react-core/dist/esm/components/Content/index.js";
import { Modal, ModalBody, ModalFooter, ModalHeader } from "@patternfly/react-core/dist/esm/components/Modal/index.js";

import { describeFailure } from "../api/errors";
import type { ExtensionInfo, ExtensionsService } from "../api/service";

export function RemoveDialog(props: { service: ExtensionsService; extension: ExtensionInfo; onClose: () => void }) {
  const { service, extension, onClose } = props;
  const [now, setNow] = useState(true);
  const [pending, setPending] = useState(false);
  const [error, setError] = useState("");

  const remove = () => {
    setPending(true);
    setError("");
    service
      .remove(extension, extension.merged && now)
      .then(() => onClose())
      .catch((e: unknown) => {
        setError(describeFailure(e, "remove"));
        setPending(false);
      });
  };

  return (
    <Modal variant="small" isOpen onClose={onClose} aria-labelledby="remove-title" aria-describedby="remove-body">
      <ModalHeader title={`Remove ${extension.name}?`} labelId="remove-title" titleIconVariant="warning" />
      <ModalBody id="remove-body">
        <Content component="p">
          The image of {extension.name}
          {extension.version ? ` ${extension.version}` : ""} is deleted and it is disabled for every boot state.
        </Content>
        {extension.merged && (
          <Checkbox
            id="remove-now"
            label="Also take it out of the running system now"
            description="Otherwise it stays merged until the next refresh or boot."
            isChecked={now}
            isDisabled={pending}
            onChange={(_e, checked) => setNow(checked)}
          />
        )}
        {error && <Alert variant="danger" isInline title={error} />}
      </ModalBody>
      <ModalFooter>
        <Button variant="danger" onClick={remove} isLoading={pending} isDisabled={pending}>
          Remove
        </Button>
        <Button variant="link" onClick={onClose} isDisabled={pending}>
          Cancel
        </Button>
      </ModalFooter>
    </Modal>
  );
}
